"""containerd's image-verifier contract (issue 15): flags, the descriptor on stdin (bounded,
bound to -digest), settings next to the executable, and one line on stdout and stderr."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opk_sign.admission.settings import SETTINGS_FILE, Settings
from opk_sign.containerd import verifier
from opk_sign.containerd.install import EXECUTABLE, containerd_fragment, install
from opk_sign.errors import UsageError

DIGEST = "sha256:" + "ab" * 32
MEDIA = "application/vnd.oci.descriptor.v1+json"


def test_parse_go_style_flags() -> None:
    values = verifier.parse_args(
        ["-name", "r/a:v1", "--digest=" + DIGEST, "-stdin-media-type", MEDIA]
    )
    assert values == {"name": "r/a:v1", "digest": DIGEST, "stdin-media-type": MEDIA}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-digest", DIGEST], "-name is required"),
        (["-name", "a"], "-digest is required"),
        (["-name", "a", "-name", "b", "-digest", DIGEST], "given twice"),
        (["-name", "a", "-digest", DIGEST, "-verbose", "1"], "unknown flag"),
        (["-name", "a", "-digest", DIGEST, "extra"], "unexpected argument"),
        (["-name", "a", "-digest"], "needs a value"),
        (["-name", "a", "-digest", DIGEST, "-stdin-media-type", "text/plain"], "only"),
    ],
)
def test_bad_invocations(argv: list[str], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        verifier.parse_args(argv)


def descriptor(**fields: object) -> io.BytesIO:
    document = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": DIGEST, "size": 9}
    document.update(fields)
    return io.BytesIO(json.dumps(document).encode())


def test_descriptor_is_read_bounded_and_bound_to_the_digest() -> None:
    assert verifier.read_descriptor(descriptor(), DIGEST) is not None
    assert verifier.read_descriptor(io.BytesIO(b""), DIGEST) is None
    with pytest.raises(UsageError, match="not of -digest"):
        verifier.read_descriptor(descriptor(digest="sha256:" + "cd" * 32), DIGEST)
    with pytest.raises(UsageError, match="larger than"):
        verifier.read_descriptor(io.BytesIO(b" " * 10 + b"x" * 70_000), DIGEST)
    with pytest.raises(UsageError, match="not JSON"):
        verifier.read_descriptor(io.BytesIO(b"{"), DIGEST)
    with pytest.raises(UsageError, match="not a JSON object"):
        verifier.read_descriptor(io.BytesIO(b"[]"), DIGEST)


def test_settings_next_to_the_real_executable(tmp_path: Path) -> None:
    real = tmp_path / "real" / "verifier"
    real.parent.mkdir()
    real.write_text("")
    link = tmp_path / "bin" / "opk-sign"
    link.parent.mkdir()
    link.symlink_to(real)
    assert verifier.settings_path(None, str(link)) == real.parent / SETTINGS_FILE
    assert verifier.settings_path("/etc/x.toml", str(link)) == Path("/etc/x.toml")
    missing = verifier.load_settings(tmp_path / "none.toml")
    assert missing.unmapped == "allow" and "missing" in missing.source


def run(
    argv: list[str], env: dict[str, str], stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opk_sign.containerd.verifier", *argv],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_a_bad_invocation_is_refused_in_one_line(tmp_path: Path) -> None:
    done = run(["-digest", DIGEST], dict(os.environ))
    assert done.returncode == 2
    assert done.stdout.count("\n") == 1 and "-name is required" in done.stdout
    assert done.stderr == done.stdout  # the same line for containerd's debug log


def test_bad_settings_refuse(tmp_path: Path) -> None:
    settings = tmp_path / "s.toml"
    settings.write_text('unmapped = "sometimes"\n')
    done = run(
        ["--config", str(settings), "-name", "r.io/a:v1", "-digest", DIGEST], dict(os.environ)
    )
    assert done.returncode == 2 and 'expected "allow" or "deny"' in done.stdout


def test_without_trust_data_every_name_is_refused(tmp_path: Path) -> None:
    """Fail closed: no trust repository installed, nothing seen before: refused, saying so."""
    env = dict(os.environ, OPK_SIGN_TRUST_DIR=str(tmp_path / "nothing"))
    done = run(["-name", "r.io/a:v1", "-digest", DIGEST], env, descriptor().getvalue())
    assert done.returncode == 14
    assert "every name is refused (fail closed)" in done.stdout
    assert "no trust repository is configured" in done.stdout


def test_install_writes_an_executable_and_settings_outside_the_bin_dir(tmp_path: Path) -> None:
    bin_dir = tmp_path / "verifiers" / "bin"
    settings = Settings(trust_dir=tmp_path / "nothing", unmapped="deny")
    installed = install(settings, bin_dir=bin_dir)
    assert installed.executable == bin_dir / EXECUTABLE
    assert installed.config == tmp_path / "verifiers" / SETTINGS_FILE
    assert sorted(p.name for p in bin_dir.iterdir()) == [EXECUTABLE]
    assert os.access(installed.executable, os.X_OK)
    assert f'bin_dir = "{bin_dir}"' in installed.fragment
    assert installed.fragment == containerd_fragment(bin_dir)
    assert 'unmapped = "deny"' in installed.config.read_text()
    # The executable runs this installation, with these settings (env cleaned by -I).
    done = subprocess.run(
        [str(installed.executable), "-name", "r.io/a:v1", "-digest", DIGEST],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "OPK_SIGN_TRUST_DIR"},
    )
    assert done.returncode == 14, done.stdout + done.stderr
    assert str(tmp_path / "nothing") in done.stdout
    with pytest.raises(UsageError, match="inside the verifier directory"):
        install(settings, bin_dir=bin_dir, config=bin_dir / "settings.toml")


def test_the_install_command_prints_the_containerd_fragment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from opk_sign.cli.main import main

    bin_dir = tmp_path / "iv" / "bin"
    code = main(
        [
            "install",
            "containerd-verifier",
            "--bin-dir",
            str(bin_dir),
            "--unmapped",
            "deny",
            "--trust-dir",
            str(tmp_path / "trust"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--audit-log",
            str(tmp_path / "audit.jsonl"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert '[plugins."io.containerd.image-verifier.v1.bindir"]' in out
    assert f'bin_dir = "{bin_dir}"' in out
    assert "no trust repository is installed" in out  # said at once, not at the first pull
    written = (tmp_path / "iv" / SETTINGS_FILE).read_text()
    assert 'unmapped = "deny"' in written and f'trust-dir = "{tmp_path / "trust"}"' in written


def test_install_refuses_a_place_containerd_would_never_run(tmp_path: Path) -> None:
    """containerd runs the first max_verifiers files in name order: opk-sign past them would
    let every pull through unverified (red team)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for i in range(10):
        (bin_dir / f"a-verifier-{i}").write_text("#!/bin/sh\nexit 0\n")
    settings = Settings(trust_dir=tmp_path / "nothing")
    with pytest.raises(UsageError, match="containerd runs only the first 10"):
        install(settings, bin_dir=bin_dir)
    assert EXECUTABLE not in {p.name for p in bin_dir.iterdir()}
    (bin_dir / "a-verifier-9").unlink()  # now 9 before it: the 10th is opk-sign
    install(settings, bin_dir=bin_dir)


def test_a_failed_install_leaves_no_partial_file_in_the_verifier_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """containerd runs every file there: a half-written one would run on every pull."""
    bin_dir = tmp_path / "bin"
    real_replace = os.replace

    def full_disk(src: object, dst: object) -> None:
        if str(dst).startswith(str(bin_dir)):
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(UsageError, match="No space left on device"):
        install(Settings(trust_dir=tmp_path / "nothing"), bin_dir=bin_dir)
    assert list(bin_dir.iterdir()) == []
