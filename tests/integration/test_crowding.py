"""Signatures by other identities never crowd out a valid one (issue 11, class 6): whoever can
push referrers can list as many foreign signatures as they like before the valid one, with honest
or lying unsigned hints, and the same referrer many times; the valid signature is still found."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from opk_sign.bundle import (
    ANNOTATION_IDENTITY,
    ANNOTATION_ISSUER,
    ANNOTATION_REPOSITORY,
    BUNDLE_MEDIA_TYPE,
    SIGNATURE_ARTIFACT_TYPE,
)
from opk_sign.errors import EXIT_OK, EXIT_POLICY_MISMATCH, EXIT_REGISTRY
from opk_sign.http import HTTPConfig
from opk_sign.oci import mediatypes
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.pktoken import GITHUB_ISSUER
from opk_sign.policy import policy_from_fields
from opk_sign.verify.image import verify_image
from opk_sign.verify.options import VerifyOptions
from tests.helpers import op_key
from tests.services.hostile_registry import (
    EMPTY,
    Answer,
    HostileRegistry,
    canonical,
    image_manifest,
    sha,
)
from tests.unit.attacks.world import (
    NOW,
    REPOSITORY,
    dump,
    issue,
    jwks_of,
    osm,
    signature_bundle,
    ss_payload,
)

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("hostile")]

FOREIGN = "evil-org/evil-repo"
FAST = HTTPConfig(retries=0, connect_timeout=2.0, read_timeout=2.0)


MANIFEST = image_manifest()


@dataclass(frozen=True)
class Scene:
    registry: HostileRegistry
    valid: bytes
    foreign: bytes

    @property
    def image(self) -> str:
        return f"{self.registry.host}/{REPOSITORY}:v1"


@pytest.fixture(scope="module")
def scene() -> Iterator[Scene]:
    with HostileRegistry() as registry:
        payload = ss_payload(sha(MANIFEST), f"{registry.host}/{REPOSITORY}")
        mine = issue()
        theirs = issue(raw_claims={"repository": FOREIGN, "repository_owner": "evil-org"})
        valid = dump(signature_bundle(mine.pk, osm(mine.pk, mine.user_key, payload)))
        foreign = dump(signature_bundle(theirs.pk, osm(theirs.pk, theirs.user_key, payload)))
        yield Scene(registry, valid, foreign)


def referrer(bundle: bytes, hinted_repository: str, n: int) -> tuple[bytes, dict[str, Any]]:
    """An artifact manifest holding ``bundle`` with unsigned hints naming a repository."""
    hints = {
        ANNOTATION_REPOSITORY: hinted_repository,
        ANNOTATION_IDENTITY: f"{hinted_repository}/.github/workflows/release.yml@refs/tags/v1",
        ANNOTATION_ISSUER: GITHUB_ISSUER,
        "n": str(n),  # distinct manifests for one bundle
    }
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "artifactType": SIGNATURE_ARTIFACT_TYPE,
            "config": {"mediaType": mediatypes.OCI_EMPTY, "digest": sha(EMPTY), "size": 2},
            "layers": [
                {"mediaType": BUNDLE_MEDIA_TYPE, "digest": sha(bundle), "size": len(bundle)}
            ],
            "subject": {
                "mediaType": mediatypes.OCI_MANIFEST,
                "digest": sha(MANIFEST),
                "size": len(MANIFEST),
            },
            "annotations": hints,
        }
    )
    entry = {
        "mediaType": mediatypes.OCI_MANIFEST,
        "digest": sha(manifest),
        "size": len(manifest),
        "artifactType": SIGNATURE_ARTIFACT_TYPE,
        "annotations": hints,
    }
    return manifest, entry


def serve(scene: Scene, listed: list[tuple[bytes, str]], repeat: int = 1) -> None:
    """``listed``: (bundle, hinted repository) in the order the referrers answer lists them."""
    answers = {
        "base": Answer(200, EMPTY),
        "manifest:v1": Answer(200, MANIFEST, mediatypes.OCI_MANIFEST),
    }
    entries = []
    for n, (bundle, hint) in enumerate(listed):
        manifest, entry = referrer(bundle, hint, n)
        answers[f"manifest:{entry['digest']}"] = Answer(200, manifest, mediatypes.OCI_MANIFEST)
        answers[f"blob:{sha(bundle)}"] = Answer(200, bundle, BUNDLE_MEDIA_TYPE)
        entries.extend([entry] * repeat)
    index = {"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}
    answers[f"referrers:{sha(MANIFEST)}"] = Answer(200, canonical(index), mediatypes.OCI_INDEX)
    scene.registry.script(answers)


def verify(scene: Scene) -> tuple[int, int]:
    options = VerifyOptions(
        policy=policy_from_fields({"repository": REPOSITORY}),
        keys=jwks_of(op_key()),
        issuers=frozenset({GITHUB_ISSUER}),
        now=NOW,
    )
    with RegistryClient(Keychain.anonymous(), FAST) as client:
        result = verify_image(client, scene.image, options)
    tried = len(result.manifests[0].checks) if result.manifests else 0
    return result.exit_code, tried


def test_40_foreign_signatures_listed_first_with_honest_hints(scene: Scene) -> None:
    foreign = [(scene.foreign, FOREIGN) for _ in range(40)]
    serve(scene, [*foreign, (scene.valid, REPOSITORY)])
    code, tried = verify(scene)
    assert code == EXIT_OK
    assert tried == 1  # hints put the plausible one first: no foreign bundle was even fetched


def test_40_foreign_signatures_with_hints_that_lie(scene: Scene) -> None:
    # The hints claim the victim's repository: only the full verification tells them apart.
    liars = [(scene.foreign, REPOSITORY) for _ in range(40)]
    serve(scene, [*liars, (scene.valid, REPOSITORY)])
    code, tried = verify(scene)
    assert code == EXIT_OK
    assert tried == 41


def test_one_referrer_listed_a_thousand_times_is_tried_once(scene: Scene) -> None:
    serve(scene, [(scene.foreign, REPOSITORY)], repeat=1000)
    code, tried = verify(scene)
    assert code == EXIT_POLICY_MISMATCH
    assert tried == 1


def test_control_only_foreign_signatures_is_a_policy_mismatch(scene: Scene) -> None:
    serve(scene, [(scene.foreign, FOREIGN) for _ in range(3)])
    assert verify(scene) == (EXIT_POLICY_MISMATCH, 3)


def test_a_flood_past_the_bound_is_unknown_not_invalid(scene: Scene) -> None:
    # 300 junk referrers copying the honest hints, the valid one last: past the bound of 256 the
    # rest is untried, so the outcome is 13 (unknown), never 12 or 11.
    liars = [(scene.foreign, REPOSITORY) for _ in range(300)]
    serve(scene, [*liars, (scene.valid, REPOSITORY)])
    code, _ = verify(scene)
    assert code == EXIT_REGISTRY


def test_hints_never_feed_the_policys_regexes(scene: Scene) -> None:
    # A backtracking pattern and a hint built to explode it: hints only meet equality checks.
    options = VerifyOptions(
        policy=policy_from_fields({"repository-regex": "octo-org/([a-z0-9]+-?)*"}),
        keys=jwks_of(op_key()),
        issuers=frozenset({GITHUB_ISSUER}),
        now=NOW,
    )
    serve(scene, [(scene.foreign, "octo-org/" + "a" * 60 + ".")])
    started = time.monotonic()
    with RegistryClient(Keychain.anonymous(), FAST) as client:
        result = verify_image(client, scene.image, options)
    assert time.monotonic() - started < 5
    assert result.exit_code == EXIT_POLICY_MISMATCH
