"""Red-team F11 and F12: hostile input to the containerd verifier is refused in one line (exit
2), never a traceback; settings another user could have written, or a ``-config FILE`` that is
not there, are refused (fail closed), never read or replaced by defaults."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opk_sign.containerd import verifier
from opk_sign.errors import UsageError

DIGEST = "sha256:" + "ab" * 32
VERIFIER = [sys.executable, "-I", "-m", "opk_sign.containerd.verifier"]


def run(argv: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*VERIFIER, *argv],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=60,
        check=False,
    )


def settings_file(tmp_path: Path, text: str = 'unmapped = "deny"\n') -> Path:
    directory = tmp_path / "node"
    directory.mkdir(mode=0o755, exist_ok=True)
    directory.chmod(0o755)
    path = directory / "opk-sign-containerd-verifier.toml"
    path.write_text(text)
    path.chmod(0o644)
    return path


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"[" * 30_000, "not valid JSON"),  # RecursionError inside json.loads
        (b"[" * 40 + b"]" * 40, "nested deeper"),
        (
            b'{"digest": "' + DIGEST.encode() + b'", ' + b'"a": {' * 30 + b'"b": 1' + b"}" * 31,
            "deeper",
        ),
        (b'{"digest": 1, "digest": 2}', "duplicate"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_hostile_descriptor_is_a_one_line_refusal(
    tmp_path: Path, document: bytes, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        verifier.read_descriptor(io.BytesIO(document), DIGEST)
    if document.startswith(b"[" * 30_000):
        path = settings_file(tmp_path)
        done = subprocess.run(
            [*VERIFIER, "-config", str(path), "-name", "ghcr.io/o/a:1", "-digest", DIGEST],
            input=document,
            capture_output=True,
            env=dict(os.environ),
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert b"Traceback" not in done.stderr
        assert (
            done.stdout.count(b"\n") == 1
            and b"refused: the descriptor on stdin is not JSON" in done.stdout
        )


def test_a_named_config_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "none.toml"
    with pytest.raises(UsageError, match=r"does not exist"):
        verifier.load_settings(missing, explicit=True)
    done = run(["-config", str(missing), "-name", "ghcr.io/o/a:1", "-digest", DIGEST])
    assert done.returncode == 2
    assert (
        "refused: the settings file" in done.stdout
        and "does not exist (it was named explicitly" in done.stdout
    )
    # The file next to the program (not named) may be missing: defaults, as documented.
    assert verifier.load_settings(missing).source.endswith("(missing: defaults)")


@pytest.mark.parametrize("mode", [0o664, 0o646, 0o666])
def test_settings_others_could_write_are_refused(tmp_path: Path, mode: int) -> None:
    path = settings_file(tmp_path)
    assert verifier.load_settings(path, explicit=True).unmapped == "deny"
    path.chmod(mode)
    with pytest.raises(UsageError, match="another user could change"):
        verifier.load_settings(path, explicit=True)
    done = run(["-config", str(path), "-name", "ghcr.io/o/a:1", "-digest", DIGEST])
    assert done.returncode == 2 and "another user could change" in done.stdout


def test_a_settings_directory_others_could_write_is_refused(tmp_path: Path) -> None:
    path = settings_file(tmp_path)
    path.parent.chmod(0o777)  # anyone could replace (or delete) the file
    with pytest.raises(UsageError, match="directory of the settings"):
        verifier.load_settings(path, explicit=True)
    with pytest.raises(UsageError, match="directory of the settings"):
        verifier.load_settings(path.parent / "missing.toml")  # nor plant a missing one
    path.parent.chmod(0o1777)  # sticky (like /tmp): others cannot replace this user's file
    assert verifier.load_settings(path).unmapped == "deny"


def test_settings_owned_by_another_user_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = settings_file(tmp_path)
    if os.geteuid() == 0:
        os.chown(path, 4242, -1)
    else:  # this user is not the owner any more; root (uid 0) would still be trusted
        real = os.geteuid()
        monkeypatch.setattr(os, "geteuid", lambda: real + 1)
    with pytest.raises(UsageError, match="owned by uid"):
        verifier.load_settings(path, explicit=True)


def test_serve_refuses_a_named_config_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from opk_sign.cli.main import main

    missing = tmp_path / "none.toml"
    assert main(["serve", "--config", str(missing), "--listen", "127.0.0.1:0"]) == 2
    assert "does not exist (it was named explicitly" in capsys.readouterr().err
