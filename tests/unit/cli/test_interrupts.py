"""A batch never loses the others (issue 11, class 5): an interrupt stops new work, reports what
was decided (text, summary, VSAs) and exits 130 (SIGINT) or 143 (SIGTERM); a closed stdout ends
the run quietly."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from opk_sign.cli import main as cli_main
from opk_sign.cli import signals
from opk_sign.cli.verify import report
from opk_sign.errors import UsageError
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.policy import policy_from_fields
from opk_sign.verify.image import verify_images
from opk_sign.verify.options import VerifyOptions
from opk_sign.verify.outcome import ImageResult, Outcome

DIGEST = "sha256:" + "ab" * 32


def args(tmp_path: Path, output: str = "text") -> argparse.Namespace:
    return argparse.Namespace(output=output, vsa=tmp_path / "vsa.jsonl", progress=False)


def results(interrupt: type[KeyboardInterrupt]) -> Iterator[ImageResult]:
    yield ImageResult("r/a:v1", Outcome.NO_SIGNATURES, "no signatures", "r/a", DIGEST)
    yield ImageResult("r/b:v1", Outcome.INVALID, "bad", "r/b", DIGEST)
    raise interrupt


def test_an_interrupted_batch_reports_what_was_decided(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = policy_from_fields({"repository": "o/app"})
    options = VerifyOptions(policy=policy, keys=None, issuers=frozenset())  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        report(args(tmp_path), results(KeyboardInterrupt), 200, options)
    out = capsys.readouterr().out
    assert "r/a:v1" in out and "r/b:v1" in out
    assert "0 of 2 images verified" in out  # the summary of what was decided
    assert (tmp_path / "vsa.jsonl").exists()


@pytest.mark.parametrize(
    ("interrupt", "code"), [(KeyboardInterrupt, 130), (signals.Terminated, 143)]
)
def test_interrupts_exit_128_plus_the_signal(
    monkeypatch: pytest.MonkeyPatch, interrupt: type[KeyboardInterrupt], code: int
) -> None:
    def run(_: argparse.Namespace) -> int:
        raise interrupt

    parser = cli_main.build_parser()
    monkeypatch.setattr(cli_main, "build_parser", lambda: _with_func(parser, run))
    assert cli_main.main(["inspect", "r/a:v1"]) == code


def _with_func(parser: argparse.ArgumentParser, func: object) -> argparse.ArgumentParser:
    parser.set_defaults(func=func)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                sub.set_defaults(func=func)
    return parser


def test_queued_images_never_start_after_an_interrupt() -> None:
    started: list[str] = []
    gate = threading.Event()

    def slow(image: str) -> VerifyOptions:
        started.append(image)
        gate.wait(0.2)
        raise UsageError("each image takes a while, then fails on its own")

    images = [f"registry.example/o/app{i}:v1" for i in range(50)]
    batch: Generator[ImageResult, None, None] = verify_images(  # type: ignore[assignment]
        images,
        slow,
        client=RegistryClient(Keychain.anonymous()),  # never asked: the options fail first
        jobs=2,
    )
    first = next(batch)
    batch.close()  # what report() does when interrupted: the generator is closed
    assert first.image == images[0]
    time.sleep(0.3)
    assert len(started) <= 4  # the two running (and at most one more each), not all fifty


def test_a_closed_stdout_ends_quietly(tmp_path: Path) -> None:
    listing = tmp_path / "images.txt"
    listing.write_text("".join(f"not a reference {i}!\n" for i in range(2000)))
    with subprocess.Popen(
        [
            *(sys.executable, "-m", "opk_sign.cli", "verify", "--images-from", str(listing)),
            *("--repository", "o/app", "--no-trust-repo", "--output", "json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.readline()
        proc.stdout.close()  # `| head -1`
        _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err, err.decode()
    assert proc.returncode in (141, -signal.SIGPIPE), err.decode()
