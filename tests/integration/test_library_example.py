"""docs/library.md's front-door example, run as written against an image signed on loopback:
a Python user verifies an image with a policy built in code, no argparse (issue 10, item 2)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import sign_image
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import olareg

pytestmark = [pytest.mark.integration]

DOC = Path(__file__).resolve().parents[2] / "docs" / "library.md"
REPO = "octo-org/octo-repo"


def example() -> Callable[..., bool]:
    text = DOC.read_text()
    section = text.split("## Verify an image from Python", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)[:1]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOC), "exec"), namespace)  # the documented code, as written
    verify: Callable[..., bool] = namespace["verify"]
    return verify


def test_the_front_door_imports() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import opk_sign; print(opk_sign.verify_images, opk_sign.VerifyOptions, "
            "opk_sign.sign_image)",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "function verify_images" in out and "VerifyOptions" in out and "sign_image" in out


def test_documented_example_verifies_a_signed_image(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    verify = example()
    with (
        GitHubOIDCEmulator(key=generated_op_key(0)) as emulator,
        olareg(tmp_path) as registry,
        RegistryClient(Keychain.anonymous()) as client,
    ):
        emulator.set_claims(ref="refs/tags/v1", repository=REPO)
        image = registry.ref("octo-org/app", "v1")
        unsigned = registry.ref("octo-org/unsigned", "v1")
        push_sample_image(client, image, ("linux/amd64",), index=False)
        push_sample_image(client, unsigned, ("linux/amd64",), index=False)
        provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
        sign_image(image, provider=provider, client=client)

        assert verify(image, REPO, emulator.issuer) is True
        out = capsys.readouterr().out
        assert f"{image}: verified (exit 0)" in out
        assert f"signed by {REPO}/.github/workflows/" in out
        # The same function refuses what it must: another repository, an unsigned image.
        assert verify(image, "octo-org/other", emulator.issuer) is False
        assert "policy-mismatch (exit 11)" in capsys.readouterr().out
        assert verify(unsigned, REPO, emulator.issuer) is False
        assert "no-signatures (exit 10)" in capsys.readouterr().out
