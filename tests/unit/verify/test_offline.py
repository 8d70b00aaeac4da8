"""`--bundle FILE` meets exactly the checks of a bundle read from a registry (issue 11, class 3):
one function (``decide_bundle``) decides both; the offline variants of the registry cases."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from opk_sign.bundle import Bundle
from opk_sign.errors import (
    EXIT_INVALID_SIGNATURE,
    EXIT_OK,
    EXIT_POLICY_MISMATCH,
    EXIT_USAGE,
)
from opk_sign.pktoken import GITHUB_ISSUER
from opk_sign.policy import policy_from_fields
from opk_sign.verify.image import verify_bundle_offline
from opk_sign.verify.options import VerifyOptions
from tests.unit.attacks.world import (
    DIGEST,
    NOW,
    OTHER_DIGEST,
    POLICY,
    PROVENANCE,
    REFERENCE,
    SPDX,
    dump,
    world,
)

IMAGE = f"{REFERENCE}@{DIGEST}"


def options(**changes: object) -> VerifyOptions:
    base = VerifyOptions(
        policy=POLICY, keys=world().keys, issuers=frozenset({GITHUB_ISSUER}), now=NOW
    )
    return VerifyOptions(**{**base.__dict__, **changes})


def signature() -> Bundle:
    return Bundle.from_json(dump(world().signature))


def attestation() -> Bundle:
    return Bundle.from_json(dump(world().attestation))


def decide(bundles: Sequence[Bundle], image: str = IMAGE, **changes: object) -> tuple[int, str]:
    result = verify_bundle_offline(bundles, image, options(**changes))
    return result.exit_code, result.message


def test_control_the_signature_verifies() -> None:
    assert decide([signature()]) == (EXIT_OK, "signature verified")


def test_control_signature_and_attestation_verify() -> None:
    code, message = decide([signature(), attestation()], attestations=(PROVENANCE,))
    assert code == EXIT_OK, message


CASES = [
    # (name, bundles, image, option changes, exit code, message fragment)
    (
        "offline_attestation_for_a_signature",
        lambda: [attestation()],
        IMAGE,
        {},
        EXIT_INVALID_SIGNATURE,
        "bundle: not a signature (it holds a DSSE envelope, not an OSM)",
    ),
    (
        "offline_attestation_for_a_signature_with_attestation_required",
        lambda: [attestation()],
        IMAGE,
        {"attestations": (PROVENANCE,)},
        EXIT_INVALID_SIGNATURE,
        "bundle: not a signature (it holds a DSSE envelope, not an OSM)",
    ),
    (
        "offline_signature_replayed_onto_another_digest",
        lambda: [signature()],
        f"{REFERENCE}@{OTHER_DIGEST}",
        {},
        EXIT_INVALID_SIGNATURE,
        "",
    ),
    (
        "offline_signature_replayed_onto_another_repository",
        lambda: [signature()],
        f"registry.example/evil-org/app@{DIGEST}",
        {},
        EXIT_INVALID_SIGNATURE,
        "",
    ),
    (
        "offline_mirror_name_not_the_signed_one",
        lambda: [signature()],
        IMAGE,
        {"signed_name": "registry.example/other/repo"},
        EXIT_INVALID_SIGNATURE,
        "",
    ),
    (
        "offline_required_attestation_missing",
        lambda: [signature()],
        IMAGE,
        {"attestations": (PROVENANCE,)},
        EXIT_POLICY_MISMATCH,
        f"no attestation of type {PROVENANCE}",
    ),
    (
        "offline_signature_given_for_the_attestation",
        lambda: [signature(), signature()],
        IMAGE,
        {"attestations": (PROVENANCE,)},
        EXIT_POLICY_MISMATCH,
        "no attestation",
    ),
    (
        "offline_attestation_of_another_predicate_type",
        lambda: [signature(), attestation()],
        IMAGE,
        {"attestations": (SPDX,)},
        EXIT_INVALID_SIGNATURE,
        f"attestation of type {SPDX}",
    ),
    (
        "offline_attestation_replayed_onto_another_digest",
        lambda: [signature(), attestation()],
        f"{REFERENCE}@{OTHER_DIGEST}",
        {"attestations": (PROVENANCE,)},
        EXIT_INVALID_SIGNATURE,
        "",
    ),
    (
        "offline_policy_mismatch",
        lambda: [signature()],
        IMAGE,
        {"policy": policy_from_fields({"repository": "evil-org/app"})},
        EXIT_POLICY_MISMATCH,
        "evil-org/app",
    ),
    (
        "offline_image_by_tag",
        lambda: [signature()],
        f"{REFERENCE}:v1",
        {},
        EXIT_USAGE,
        "needs the image by digest",
    ),
]


@pytest.mark.parametrize(
    ("bundles", "image", "changes", "code", "fragment"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_offline_attack_is_refused(
    bundles: object, image: str, changes: dict[str, object], code: int, fragment: str
) -> None:
    got, message = decide(bundles(), image, **changes)  # type: ignore[operator]
    assert got == code, message
    assert fragment in message
