"""`make demo` (scripts/demo.sh) runs end to end, quickly, shows what it promises, and cleans up;
with --keep it leaves its services running with an env file that reruns what it showed."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from tests.services.registries import olareg
from tests.services.tsa import TimestampAuthority

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo")]

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scripts" / "demo.sh"
VENV_BIN = ROOT / ".venv" / "bin"
PROVENANCE = "https://slsa.dev/provenance/v1"
TIMEOUT = 120


def run_on_terminal(
    argv: list[str], env: Mapping[str, str], timeout: float = TIMEOUT
) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal (as `make demo` in a shell): exit code and
    everything written, line ends normalized."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=dict(env), cwd=ROOT
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"{argv} still running after {timeout} s")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal has gone
                break
            if not data:
                break
            chunks.append(data)
        returncode = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return returncode, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def alive(pid: int, args: str) -> bool:
    """``pid`` still runs ``args`` (a zombie, or a PID reused since, does not count)."""
    out = subprocess.run(
        ["ps", "-ww", "-o", "args=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return out.stdout.strip() == args.strip()


def kept_services(tmp_path: Path) -> list[tuple[int, str]]:
    """The (pid, command line) pairs a kept demo under ``tmp_path`` recorded for --stop."""
    services = []
    for record in tmp_path.glob("opk-sign-demo.*/pids"):
        for line in record.read_text().splitlines():
            pid, _, args = line.partition("\t")
            services.append((int(pid), args))
    return services


def running_from(directory: Path) -> set[int]:
    """Processes whose command line names ``directory`` (the registry and the emulator do)."""
    listing = subprocess.run(
        ["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True, check=False
    )
    pids = set()
    for line in listing.stdout.splitlines():
        pid, _, args = line.strip().partition(" ")
        if str(directory) in args and int(pid) != os.getpid():
            pids.add(int(pid))
    return pids


@pytest.fixture
def no_leaks(tmp_path: Path) -> Iterator[None]:
    """Whatever a test's kept demo started is gone afterwards, even when the test failed."""
    try:
        yield
    finally:
        doomed = {pid for pid, args in kept_services(tmp_path) if alive(pid, args)}
        # Also what was never recorded, or recorded wrongly.
        for pid in doomed | running_from(tmp_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def fresh_shell_env(tmp_path: Path) -> dict[str, str]:
    """A new login's environment: nothing of the demo's, not even the virtualenv on PATH."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "LANG": "C.UTF-8",
        # tests/conftest.py: never the user's trust repository.
        "OPK_SIGN_TRUST_DIR": os.environ["OPK_SIGN_TRUST_DIR"],
    }


def shown_commands(out: str) -> list[str]:
    """The commands the demo showed as `$ command`, in order (colors, if any, removed)."""
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    return [m.group(1) for m in re.finditer(r"^\s*\$ (.*)$", plain, re.MULTILINE)]


def test_demo_signs_shows_outputs_summary_and_referrers(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(DEMO)],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    elapsed = time.monotonic() - started
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert elapsed < 120
    for promised in (
        "3. Run entrypoint.py",
        "digest = sha256:",
        "identity = opk-sign/opk-sign/.github/workflows/sign.yml@refs/tags/v1",
        "| Manifest | Platform | Signed | Attestations |",
        "application/vnd.dev.opk-sign.signature.v1+json",
        "application/vnd.dev.opk-sign.attestation.v1+json",
        "6. opk-sign verify",
        "verified (exit 0)",
        "job_workflow_ref: opk-sign/opk-sign/.github/workflows/sign.yml@refs/tags/v1",
        "policy-mismatch (exit 11)",
        "claim 'repository' is 'octo-org/hello-opk'",
    ):
        assert promised in out
    signatures = re.search(r"^signatures = (.*)$", out, re.MULTILINE)
    assert signatures is not None and signatures.group(1).count("sha256:") == 3
    # The provenance is checked, and the demo says so: the command shown requires it.
    verify = next(c for c in shown_commands(out) if c.startswith("opk-sign verify "))
    assert f"--attestation {PROVENANCE}" in verify and "--repository octo-org/hello-opk" in verify
    assert "SLSA provenance attestation verified" in out
    # It ends with what to try next: keep the services, JSON output, inspect, exit 11.
    after = out[out.index("Next, try:") :]
    assert "scripts/demo.sh --keep" in after and "make demo DEMO_ARGS=--keep" in out
    assert "-o json" in after and "opk-sign inspect" in after and "# 11" in after
    # Not a terminal (CI logs, pipes): no ANSI escapes at all.
    assert "\x1b[" not in out and "\x1b[" not in proc.stderr
    # The runner hides ::add-mask:: commands and so does the demo: no secret reaches the screen.
    assert "::add-mask::" not in out
    # Cleaned up: the scratch directory is gone and nothing it started is left running.
    assert list(tmp_path.iterdir()) == []
    assert running_from(tmp_path) == set()


def test_demo_on_a_terminal_honours_no_color(tmp_path: Path) -> None:
    status, out = run_on_terminal(
        ["bash", str(DEMO)], {**os.environ, "TMPDIR": str(tmp_path), "NO_COLOR": "1"}
    )
    assert status == 0, out
    assert "verified (exit 0)" in out
    assert "\x1b[" not in out
    assert list(tmp_path.iterdir()) == []
    assert running_from(tmp_path) == set()


@pytest.mark.usefixtures("no_leaks")
def test_demo_keep_leaves_services_and_an_env_file_that_reruns_its_commands(
    tmp_path: Path,
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    env.pop("NO_COLOR", None)
    # As a newcomer runs it: not with tests/conftest.py's OPK_SIGN_TLOG=never (the demo must keep
    # its emulator's "public" tokens out of the public log by itself).
    env.pop("OPK_SIGN_TLOG", None)
    status, out = run_on_terminal(["bash", str(DEMO), "--keep"], env)
    assert status == 0, out
    # On a terminal, without NO_COLOR, the headings are bold (the other tests' control).
    assert "\x1b[1m== 6. opk-sign verify" in out

    (kept,) = tmp_path.glob("opk-sign-demo.*")
    env_file = kept / "demo.env"
    assert f"\n  {env_file}\n" in out
    assert f"scripts/demo.sh --stop {kept}" in out
    # The env file holds the emulator's request token: the owner's only, and never on screen.
    assert env_file.stat().st_mode & 0o777 == 0o600
    token = re.search(r"^export ACTIONS_ID_TOKEN_REQUEST_TOKEN=(.+)$", env_file.read_text(), re.M)
    assert token is not None and shlex.split(token.group(1))[0] not in out
    services = kept_services(tmp_path)
    assert len(services) == 3  # the registry, the TSA, the OIDC emulator
    assert all(alive(pid, args) for pid, args in services)

    def in_fresh_shell(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", f". {shlex.quote(str(env_file))} && {command}"],
            env=fresh_shell_env(tmp_path),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # Every command the demo showed (but pushing the image again) reruns from the env file alone.
    ran = 0
    for command in shown_commands(out[: out.index("Next, try:")]):
        if command.startswith("opk-sign dev push-sample"):
            continue
        done = in_fresh_shell(command)
        expected = 11 if "--repository octo-org/other" in command else 0
        assert done.returncode == expected, (command, done.stdout, done.stderr)
        ran += 1
    assert ran == 3  # inspect, verify, the refused verify

    # And so does each command it suggests next.
    suggested = shown_commands(out[out.index("Next, try:") :])
    assert suggested[0] == f". {env_file}" and suggested[-1] == "scripts/demo.sh --stop"
    for command in suggested[1:-1]:
        done = in_fresh_shell(command)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        if "# 11" in command:
            assert done.stdout.rstrip().endswith("exit 11"), done.stdout
        elif "opk-sign verify" in command and "-o json" in command:
            # The provenance of every platform is verified, not only the signatures.
            report = json.loads(done.stdout)
            platforms = [m for m in report["manifests"] if m["platform"]]
            assert len(platforms) == 2
            for manifest in platforms:
                assert any(
                    b["kind"] == "attestation"
                    and b["predicateType"] == PROVENANCE
                    and b["outcome"] == "verified"
                    for b in manifest["bundles"]
                ), manifest
        elif "opk-sign sign" in command:
            assert "hello-opk:v2@sha256:" in done.stdout

    stopped = in_fresh_shell(suggested[-1])
    assert stopped.returncode == 0, stopped.stderr
    assert not kept.exists()
    assert not any(alive(pid, args) for pid, args in services)
    assert running_from(tmp_path) == set()


def test_demo_stop_refuses_what_is_not_a_kept_demo(tmp_path: Path) -> None:
    for argv in ([str(tmp_path)], []):
        done = subprocess.run(
            ["bash", str(DEMO), "--stop", *argv],
            env={k: v for k, v in os.environ.items() if k != "OPK_SIGN_DEMO_DIR"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 2 and "no kept demo" in done.stderr
    assert tmp_path.exists()


def test_emulator_env_file_lets_sign_then_verify(tmp_path: Path, tsa: TimestampAuthority) -> None:
    """`opk-sign sign`'s hint for local testing (export what `opk-sign dev github-oidc` prints)
    followed to the letter: the env file carries OPK_SIGN_OIDC_ISSUER, so sign and verify both
    expect the emulator's issuer instead of GitHub's."""
    claims = tmp_path / "claims.json"
    claims.write_text(json.dumps({"repository": "me/app", "ref": "refs/tags/v1"}))
    env_file = tmp_path / "job.env"
    tsa_certs = tmp_path / "tsa.pem"
    tsa_certs.write_bytes(tsa.chain_pem)
    opk = str(VENV_BIN / "opk-sign")
    emulator = subprocess.Popen(
        [
            *(sys.executable, "-m", "opk_sign.cli", "dev", "github-oidc"),
            *("--claims", str(claims), "--env-file", str(env_file)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert emulator.stdout is not None
        issuer = emulator.stdout.readline().removeprefix("# issuer: ").strip()
        assert emulator.stdout.readline() == f"# env: {env_file}\n"
        assert f"export OPK_SIGN_OIDC_ISSUER={issuer}\n" in env_file.read_text()
        with olareg(tmp_path / "registry") as registry:
            image = registry.ref("me/app", "v1")
            subprocess.run([opk, "dev", "push-sample", image], check=True, capture_output=True)
            script = (
                f". {shlex.quote(str(env_file))}\n"
                f"{opk} sign {image}\n"
                f"{opk} verify {image} --repository me/app --attestation {PROVENANCE} "
                f"--tsa-certs {shlex.quote(str(tsa_certs))} --no-trust-repo\n"
            )
            done = subprocess.run(
                ["bash", "-euc", script],
                # Sigstore's public TSA stands in for the local one: the only difference.
                env={**fresh_shell_env(tmp_path), "OPK_SIGN_TIMESTAMP_URL": tsa.url},
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"issuer:   {issuer}" in done.stdout and "verified (exit 0)" in done.stdout
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
