"""The verifier's registry credentials (issue 15): containerd passes its verifiers none, so the
engine reads the node's docker config, or the file the settings name (``registry-credentials``).
Against distribution with htpasswd auth (and the tag-schema referrers fallback): with the file,
a signed mapped image is verified; without it, the registry refuses and so does the verifier (13:
the outcome is unknown, never "unsigned")."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.admission.engine import Engine
from opk_sign.admission.settings import Settings
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.credentials import ExplicitCredentials
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import SigningOptions, sign_image
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, distribution
from tests.services.tuf import StaticServer, cli, team_repository

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("admission-credentials")]

USER, PASSWORD = "node", "node-secret"
REPO = "octo-org/app"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Registry, str, Path, str]]:
    base = tmp_path_factory.mktemp("credentials")
    saved = os.environ.get("OPK_SIGN_TRUST_DIR")
    os.environ["OPK_SIGN_TRUST_DIR"] = str(base / "trust")
    try:
        with (
            distribution(base / "registry", htpasswd_users={USER: PASSWORD}) as registry,
            GitHubOIDCEmulator(key=generated_op_key(0)) as emulator,
            StaticServer() as server,
        ):
            keychain = Keychain(
                [ExplicitCredentials.for_registry(registry.host, username=USER, password=PASSWORD)]
            )
            with RegistryClient(keychain, fallback_settle=0.0) as client:
                pushed = push_sample_image(
                    client, registry.ref("octo-org/app", "v1"), ("linux/amd64",), index=False
                )
                image = f"{registry.host}/octo-org/app@{pushed.digest}"
                emulator.set_claims(repository=REPO)
                provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
                sign_image(
                    image,
                    provider=provider,
                    client=client,
                    options=SigningOptions(provenance=False),
                )
            published = team_repository(
                base, issuer=emulator.issuer, repository=REPO, pattern=f"{registry.host}/octo-org/*"
            ).published
            server.serve(published)
            root = published / "metadata" / "1.root.json"
            assert cli("trust", "init", "--root", root, "--url", server.url) == 0
            yield registry, image, base, emulator.issuer
    finally:
        if saved is None:
            os.environ.pop("OPK_SIGN_TRUST_DIR", None)
        else:
            os.environ["OPK_SIGN_TRUST_DIR"] = saved


def test_the_settings_credentials_file_is_used(
    world: tuple[Registry, str, Path, str], tmp_path: Path
) -> None:
    registry, image, base, issuer = world
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config = tmp_path / "node-config.json"
    config.write_text(json.dumps({"auths": {registry.host: {"auth": auth}}}))
    environ = {"OPK_SIGN_TRUST_DIR": str(base / "trust"), "DOCKER_CONFIG": str(tmp_path / "none")}
    digest = image.split("@")[1]

    with_file = Engine(
        Settings(registry_credentials=config, issuer=issuer), environ=environ, notice=print
    )
    decision = with_file.decide(image.split("@")[0] + ":v1", digest)
    with_file.close()
    assert decision.allowed, decision.reason()
    assert decision.identity["repository"] == REPO

    without = Engine(Settings(issuer=issuer), environ=environ, notice=print)
    refused = without.decide(image.split("@")[0] + ":v1", digest)
    without.close()
    assert not refused.allowed and refused.exit_code == 13, refused.reason()
