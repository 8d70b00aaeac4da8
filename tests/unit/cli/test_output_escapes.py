"""Text a registry, a referrer or a signed payload wrote reaches a terminal only through
``errors.printable``: escape sequences are shown, never run (a 404 body that retitles and clears
the terminal; a referrer's annotations). And ``inspect`` never hides a referrer because an index
entry names its digest as a BuildKit attestation manifest."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from opk_sign.bundle import SIGNATURE_ARTIFACT_TYPE
from opk_sign.cli.library import Tagged, report_verify
from opk_sign.cli.main import main
from opk_sign.errors import NotFoundError
from opk_sign.library.bashbrew import TagPlan
from opk_sign.oci import mediatypes
from opk_sign.oci.buildkit import ATTESTATION_ARTIFACT_TYPE
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.inspect import inspect_image
from opk_sign.oci.manifest import parse_manifest
from opk_sign.oci.reference import Reference
from opk_sign.verify.image import verify_image

ESC = "\x1b]0;pwned\x07\x1b[2J"  # set the terminal's title, clear the screen
IMAGE = "registry.example/library/busybox:1"


class _HostileRegistry:
    """What the transport makes of a 404 whose OCI error body carries escapes."""

    def pull_manifest(self, ref: Any, digest: Any = None) -> Any:
        raise NotFoundError(f"MANIFEST_UNKNOWN: {ESC}")


def test_library_verify_text_shows_a_registrys_escapes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = verify_image(_HostileRegistry(), IMAGE, lambda image: None)  # type: ignore[arg-type, return-value]
    assert ESC in result.message  # the library keeps the text; the terminal gets it escaped
    args = argparse.Namespace(output="text", file=Path("busybox"), summary=None)
    report_verify(args, [Tagged(TagPlan("1"), IMAGE)], [result])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b]0;pwned\\x07" in out


def _json(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class _Registry:
    """Manifests by digest or tag, and referrers by subject: just what inspect reads."""

    def __init__(self) -> None:
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.referrers: dict[str, list[Descriptor]] = {}

    def put(self, document: dict[str, Any], tag: str | None = None) -> str:
        data = _json(document)
        for key in (_digest(data), tag):
            if key:
                self.manifests[key] = (document["mediaType"], data)
        return _digest(data)

    def pull_manifest(self, ref: Reference, digest: str | None = None) -> Any:
        media_type, data = self.manifests[digest or ref.tag or ""]
        return Descriptor(media_type, _digest(data), len(data)), data

    def parse(self, descriptor: Descriptor, data: bytes) -> Any:
        return parse_manifest(data, descriptor.media_type)

    def list_referrers(self, ref: Reference, digest: str, artifact_type: Any = None) -> Any:
        return list(self.referrers.get(digest, []))


CONFIG = {"mediaType": mediatypes.OCI_CONFIG, "digest": "sha256:" + "c" * 64, "size": 2}


def _signed_platform(registry: _Registry, **referrer: Any) -> tuple[str, str]:
    platform = registry.put(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "config": CONFIG, "layers": []}
    )
    signature = registry.put(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "artifactType": SIGNATURE_ARTIFACT_TYPE,
            "config": CONFIG,
            "layers": [],
            "subject": {"mediaType": mediatypes.OCI_MANIFEST, "digest": platform, "size": 1},
        }
    )
    registry.referrers[platform] = [
        Descriptor(
            mediatypes.OCI_MANIFEST,
            signature,
            1,
            artifact_type=referrer.get("artifact_type", SIGNATURE_ARTIFACT_TYPE),
            annotations=referrer.get("annotations", {}),
        )
    ]
    return platform, signature


def test_inspect_text_shows_a_referrers_escapes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = _Registry()
    _signed_platform(registry, annotations={"note": ESC}, artifact_type="application/x" + ESC)
    registry.put(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "config": CONFIG, "layers": []},
        tag="1",
    )
    monkeypatch.setattr(
        "opk_sign.oci.inspect.inspect_image",
        lambda client, ref: inspect_image(registry, ref),  # type: ignore[arg-type]
    )
    assert main(["inspect", "registry.example/a/b:1"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b]0;pwned\\x07" in out


def _inspected_platform(registry: _Registry, platform: str, attestation: str) -> dict[str, Any]:
    """Inspect an index of ``platform`` and an entry naming ``attestation`` as BuildKit's
    attestation manifest for it; the platform's node, as ``inspect -o json`` shows it."""
    entries: list[dict[str, Any]] = [
        {
            "mediaType": mediatypes.OCI_MANIFEST,
            "digest": platform,
            "size": 1,
            "platform": {"os": "linux", "architecture": "amd64"},
        },
        {
            "mediaType": mediatypes.OCI_MANIFEST,
            "digest": attestation,
            "size": 1,
            "platform": {"os": "unknown", "architecture": "unknown"},
            "annotations": {
                "vnd.docker.reference.type": "attestation-manifest",
                "vnd.docker.reference.digest": platform,
            },
        },
    ]
    registry.put({"schemaVersion": 2, "mediaType": mediatypes.OCI_INDEX, "manifests": entries}, "1")
    tree = inspect_image(registry, Reference.parse("registry.example/a/b:1"))  # type: ignore[arg-type]
    (node,) = tree.to_dict()["manifests"]
    return dict(node)


def test_inspect_never_hides_a_signature_an_index_calls_an_attestation() -> None:
    registry = _Registry()
    platform, signature = _signed_platform(registry)
    # the index's writer names the signature as the platform's attestation manifest
    node = _inspected_platform(registry, platform, signature)
    assert [r["digest"] for r in node["referrers"]] == [signature]
    assert node["referrers"][0]["artifactType"] == SIGNATURE_ARTIFACT_TYPE


class _Repeating(_Registry):
    """Lists the same referrers under every subject, counting the listings asked for."""

    def __init__(self, listed: list[Descriptor]) -> None:
        super().__init__()
        self.listed = listed
        self.asked = 0

    def list_referrers(self, ref: Reference, digest: str, artifact_type: Any = None) -> Any:
        self.asked += 1
        return list(self.listed)


def test_inspect_lists_each_manifests_referrers_once() -> None:
    """A registry repeating one listing under every subject made the walk exponential in the
    depth (4 referrers, 8 levels: ~22,000 listings); each is now asked once (red team)."""
    registry = _Repeating([])
    image = registry.put(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "config": CONFIG, "layers": []},
        tag="1",
    )
    registry.listed = [
        Descriptor(mediatypes.OCI_MANIFEST, "sha256:" + f"{i}" * 64, 1, artifact_type="x/y")
        for i in range(4)
    ]
    tree = inspect_image(registry, Reference.parse("registry.example/a/b:1"))  # type: ignore[arg-type]
    assert registry.asked == 1 + 4 and image == tree.root.descriptor.digest
    assert len(tree.root.referrers) == 4


def test_an_attestation_manifests_own_signature_is_shown_under_it() -> None:
    """A BuildKit attestation manifest that is also its platform's referrer (its `subject`) is
    shown once, as the platform's attestation, with its own referrers (`sign
    --attestation-manifests` signs it): walking its referrers once must not lose them."""
    registry = _Registry()
    platform = registry.put(
        {"schemaVersion": 2, "mediaType": mediatypes.OCI_MANIFEST, "config": CONFIG, "layers": []}
    )
    attestation = registry.put(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_MANIFEST,
            "artifactType": ATTESTATION_ARTIFACT_TYPE,
            "config": CONFIG,
            "layers": [],
            "subject": {"mediaType": mediatypes.OCI_MANIFEST, "digest": platform, "size": 1},
        }
    )
    signature = "sha256:" + "5" * 64
    registry.referrers[platform] = [
        Descriptor(mediatypes.OCI_MANIFEST, attestation, 1, artifact_type=ATTESTATION_ARTIFACT_TYPE)
    ]
    registry.referrers[attestation] = [
        Descriptor(mediatypes.OCI_MANIFEST, signature, 1, artifact_type=SIGNATURE_ARTIFACT_TYPE)
    ]
    node = _inspected_platform(registry, platform, attestation)
    assert node["referrers"] == []
    (shown,) = node["attestations"]
    assert shown["digest"] == attestation
    assert [r["digest"] for r in shown["referrers"]] == [signature]
