"""Issue 12: plain HTTP to a registry named insecure, and to no other, on a NON-loopback address.

Loopback registries get plain HTTP without being named, so this needs an address that is not
loopback: the test makes a network namespace (``unshare -n``), gives its ``lo`` the address
10.77.0.1/32 (not in 127.0.0.0/8, so opk-sign treats it as any remote host), starts olareg bound to
10.77.0.1 inside it, pushes a sample image, and runs ``opk-sign inspect`` and ``opk-sign verify``
there in each configuration. The namespace's part is this module run as a script (``_driver``),
which prints each run's exit code and output as JSON; the assertions are made out here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from opk_sign.errors import EXIT_NO_SIGNATURES, EXIT_OK, EXIT_REGISTRY
from opk_sign.names import ENV_INSECURE_REGISTRIES

pytestmark = pytest.mark.integration

ADDRESS = "10.77.0.1"
PORT = 5000
OTHER_PORT = 5001
REGISTRY = f"{ADDRESS}:{PORT}"
IMAGE = f"{REGISTRY}/team/app:v1"
ROOT = Path(__file__).resolve().parents[2]
WARNING = "anyone on the network can read and change what is sent"

#: The runs the driver makes: name, then the opk-sign arguments and the environment variable.
RUNS: dict[str, tuple[list[str], str | None]] = {
    "inspect-plain": (["inspect", IMAGE], None),
    "inspect-flag": (["inspect", IMAGE, "--insecure-registry", REGISTRY], None),
    "inspect-env": (["inspect", IMAGE], REGISTRY),
    "inspect-env-list": (["inspect", IMAGE], f"other.example:1, {REGISTRY} [fd00::1]:5000"),
    "inspect-other-port": (
        ["inspect", IMAGE, "--insecure-registry", f"{ADDRESS}:{OTHER_PORT}"],
        None,
    ),
    "inspect-no-port": (["inspect", IMAGE, "--insecure-registry", ADDRESS], None),
    "inspect-env-other-port": (["inspect", IMAGE], f"{ADDRESS}:{OTHER_PORT}"),
    "verify-plain": (["verify", IMAGE], None),
    "verify-flag": (["verify", IMAGE, "--insecure-registry", REGISTRY], None),
    "verify-env": (["verify", IMAGE], REGISTRY),
}


def _namespace_prefix() -> list[str] | None:
    """How to run a command in a new network namespace here, or None if it cannot be done."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return None
    setup = f"ip link set lo up && ip addr add {ADDRESS}/32 dev lo"
    for flags in (["-n"], ["-rn"]):  # as root; else in a user namespace of our own
        probe = subprocess.run(
            ["unshare", *flags, "sh", "-c", setup], check=False, capture_output=True
        )
        if probe.returncode == 0:
            return ["unshare", *flags]
    return None


@pytest.fixture(scope="module")
def runs() -> dict[str, dict[str, Any]]:
    prefix = _namespace_prefix()
    if prefix is None:
        pytest.skip("needs util-linux unshare and iproute2 ip, and a network namespace here")
    script = (
        f"ip link set lo up && ip addr add {ADDRESS}/32 dev lo && "
        f'exec "$0" -m tests.integration.test_insecure_registry'
    )
    env = {k: v for k, v in os.environ.items() if k != ENV_INSECURE_REGISTRIES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    done = subprocess.run(
        [*prefix, "sh", "-c", script, sys.executable],
        check=False,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result: dict[str, dict[str, Any]] = json.loads(done.stdout)
    return result


def _shown(run: dict[str, Any]) -> str:
    return f"exit {run['code']}\nstdout:\n{run['stdout']}\nstderr:\n{run['stderr']}"


@pytest.mark.parametrize("name", ["inspect-plain", "verify-plain"])
def test_without_naming_it_https_is_tried_and_fails_13(
    runs: dict[str, dict[str, Any]], name: str
) -> None:
    run = runs[name]
    said = run["stdout"] + run["stderr"]  # verify reports each image on stdout
    assert run["code"] == EXIT_REGISTRY, _shown(run)
    assert f"GET https://{REGISTRY}/v2/" in said, _shown(run)
    assert "could not reach the registry over HTTPS" in said, _shown(run)
    assert f"hint: if {REGISTRY} serves plain HTTP" in said, _shown(run)
    assert f"--insecure-registry {REGISTRY}" in said, _shown(run)
    assert ENV_INSECURE_REGISTRIES in said, _shown(run)
    assert WARNING not in said


@pytest.mark.parametrize(
    ("name", "source"),
    [
        ("inspect-flag", "--insecure-registry"),
        ("inspect-env", f"${ENV_INSECURE_REGISTRIES}"),
        ("inspect-env-list", f"${ENV_INSECURE_REGISTRIES}"),
    ],
)
def test_named_it_works_with_one_warning(
    runs: dict[str, dict[str, Any]], name: str, source: str
) -> None:
    run = runs[name]
    assert run["code"] == EXIT_OK, _shown(run)
    assert runs["pushed"]["digest"] in run["stdout"], _shown(run)
    warning = f"warning: plain HTTP to {REGISTRY} ({source}): {WARNING}"
    assert run["stderr"].splitlines().count(warning) == 1, _shown(run)
    assert run["stderr"].count(WARNING) == 1, _shown(run)


@pytest.mark.parametrize("name", ["verify-flag", "verify-env"])
def test_verify_reaches_the_named_registry(runs: dict[str, dict[str, Any]], name: str) -> None:
    # The sample image has no signatures: exit 10 says the registry was asked, and answered.
    run = runs[name]
    assert run["code"] == EXIT_NO_SIGNATURES, _shown(run)
    assert run["stderr"].count(WARNING) == 1, _shown(run)


@pytest.mark.parametrize(
    "name", ["inspect-other-port", "inspect-no-port", "inspect-env-other-port"]
)
def test_naming_another_port_or_no_port_does_not_cover_it(
    runs: dict[str, dict[str, Any]], name: str
) -> None:
    run = runs[name]
    assert run["code"] == EXIT_REGISTRY, _shown(run)
    assert f"GET https://{REGISTRY}/v2/" in run["stderr"], _shown(run)
    assert WARNING not in run["stderr"], _shown(run)


# --- inside the namespace ------------------------------------------------------------------------


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import requests

    deadline = time.monotonic() + 20
    with requests.Session() as session:
        session.trust_env = False
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"olareg exited with {process.returncode}:\n{log.read_text()}")
            try:
                session.get(url, timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer:\n{log.read_text()}")


def _opk_sign(argv: list[str], insecure: str | None, jwks: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != ENV_INSECURE_REGISTRIES}
    if insecure is not None:
        env[ENV_INSECURE_REGISTRIES] = insecure
    if argv[0] == "verify":
        argv = [*argv, "--repository", "team/app", "--jwks", str(jwks), "--no-trust-repo"]
    done = subprocess.run(
        [sys.executable, "-m", "opk_sign.cli", *argv],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def _driver() -> None:
    """Start olareg on 10.77.0.1, push a sample image, make every run; JSON on stdout."""
    from opk_sign._dev.github_oidc import OPSigningKey
    from opk_sign.oci.client import RegistryClient
    from opk_sign.oci.keychain import Keychain
    from opk_sign.urls import InsecureRegistries
    from tests.services.images import push_sample_image
    from tests.services.tools import tool_path

    with tempfile.TemporaryDirectory(prefix="opk-insecure-") as tmp:
        work = Path(tmp)
        (work / "store").mkdir()
        log = work / "olareg.log"
        argv = [
            str(tool_path("olareg")),
            *("serve", "--addr", ADDRESS, "--port", str(PORT), "--dir", str(work / "store")),
            "--api-referrer=true",
        ]
        jwks = work / "jwks.json"
        jwks.write_text(json.dumps({"keys": [OPSigningKey.generate().public_jwk()]}))
        with log.open("ab") as out:
            process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
            try:
                _wait_ready(f"http://{REGISTRY}/v2/", process, log)
                said: list[str] = []
                insecure = InsecureRegistries.parse([REGISTRY])
                client = RegistryClient(
                    Keychain.anonymous(), insecure_registries=insecure, notice=said.append
                )
                with client:
                    pushed = push_sample_image(client, IMAGE, ["linux/amd64"], index=False)
                results: dict[str, Any] = {"pushed": {"digest": pushed.digest, "notices": said}}
                for name, (args, env_value) in RUNS.items():
                    results[name] = _opk_sign(args, env_value, jwks)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    json.dump(results, sys.stdout)


def test_the_push_warned_once(runs: dict[str, dict[str, Any]]) -> None:
    assert runs["pushed"]["notices"] == [
        f"warning: plain HTTP to {REGISTRY} (--insecure-registry): {WARNING}"
    ]


if __name__ == "__main__":
    _driver()
