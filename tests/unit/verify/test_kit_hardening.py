"""What the red team found in signatures that travel (issue 12), each pinned: the replay hint
only for a signer the policy accepts, names that hide line breaks, archive times past year 9999,
escapes in text output, and download's refusals of a flooding or malformed registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from opk_sign.bundle import BUNDLE_MEDIA_TYPE, SIGNATURE_ARTIFACT_TYPE, Bundle
from opk_sign.errors import PayloadMismatchError, RegistryError, TrustError, UsageError, printable
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.digest import sha256_digest
from opk_sign.oci.manifest import parse_manifest
from opk_sign.oci.reference import Reference
from opk_sign.policy import policy_from_fields
from opk_sign.trust.jwks_archive import JWKSArchive
from opk_sign.verify.bundle import verify_signature_bundle
from opk_sign.verify.kit import TrustMaterial, download_kit
from tests.unit.attacks.world import DIGEST, NOW, REPOSITORY, dump, world

MIRROR = f"mirror.example/{REPOSITORY}"


def _replay(policy_repository: str) -> PayloadMismatchError:
    w = world()
    with pytest.raises(PayloadMismatchError) as caught:
        verify_signature_bundle(
            Bundle.from_json(dump(w.signature)),
            digest=DIGEST,
            docker_reference=MIRROR,
            keys=w.keys,
            policy=policy_from_fields({"repository": policy_repository}),
            now=NOW,
        )
    return caught.value


def test_the_replay_hint_names_the_flag_only_for_a_signer_the_policy_accepts() -> None:
    accepted = _replay(REPOSITORY)
    assert accepted.hint is not None and "--signed-repository registry.example/" in accepted.hint
    refused = _replay("evil-org/app")
    assert refused.hint is None  # never invite naming the repository of someone else's signature


@pytest.mark.parametrize(
    "text", ["ghcr.io\n/octo-org/app", "ghcr.io/octo-org/app\n", "ghcr.io/octo\n-org/app:v1"]
)
def test_a_name_with_a_line_break_is_no_reference(text: str) -> None:
    with pytest.raises(UsageError):
        Reference.parse(text)


def test_archive_times_past_year_9999_are_a_trust_error() -> None:
    doc = {
        "issuer": "https://token.actions.githubusercontent.com",
        "keys": [{"jwk": world().keys.jwks["keys"][0], "firstSeen": 10**20, "lastSeen": 10**20}],
    }
    with pytest.raises(TrustError, match="before year 10000"):
        JWKSArchive.from_json(json.dumps(doc))


def test_printable_escapes_control_characters_and_keeps_lines() -> None:
    assert printable("ok\nnext\tcol") == "ok\nnext\tcol"
    assert printable("a\x1b[8mb\rc\u202ed") == "a\\x1b[8mb\\x0dc\\u202ed"


# --- download against a registry that floods or lies -------------------------------------------


class _Registry:
    """A registry client stand-in: one single-platform image and the referrers given."""

    def __init__(self, referrers: list[tuple[dict[str, Any], bytes]]) -> None:
        config = {
            "mediaType": "application/vnd.oci.empty.v1+json",
            "digest": sha256_digest(b"{}"),
            "size": 2,
        }
        self.image = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config,
                "layers": [],
            }
        ).encode()
        self.digest = sha256_digest(self.image)
        self.blobs: dict[str, bytes] = {}
        self.manifests = {self.digest: self.image}
        self.listed: list[Descriptor] = []
        for notes, bundle in referrers:
            blob_digest = sha256_digest(bundle)
            layer = {"mediaType": BUNDLE_MEDIA_TYPE, "digest": blob_digest, "size": len(bundle)}
            manifest = json.dumps(
                {
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "artifactType": SIGNATURE_ARTIFACT_TYPE,
                    "config": config,
                    "layers": [layer],
                    "subject": {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": self.digest,
                        "size": len(self.image),
                    },
                    "annotations": notes,
                }
            ).encode()
            digest = sha256_digest(manifest)
            self.manifests[digest] = manifest
            self.blobs[blob_digest] = bundle
            self.listed.append(
                Descriptor(
                    "application/vnd.oci.image.manifest.v1+json",
                    digest,
                    len(manifest),
                    artifact_type=SIGNATURE_ARTIFACT_TYPE,
                )
            )

    def pull_manifest(self, ref: Any, digest: str | None = None) -> tuple[Descriptor, bytes]:
        wanted = digest or self.digest
        data = self.manifests[wanted]
        return Descriptor("application/vnd.oci.image.manifest.v1+json", wanted, len(data)), data

    @staticmethod
    def parse(descriptor: Descriptor, data: bytes) -> Any:
        return parse_manifest(data, descriptor.media_type)

    def list_referrers(
        self, ref: Any, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        return list(self.listed) if digest == self.digest else []

    def get_blob(self, ref: Any, digest: str, max_size: int = 0) -> bytes:
        return self.blobs[digest]


def _download(registry: _Registry, tmp_path: Path) -> Any:
    return download_kit(
        registry,  # type: ignore[arg-type]  # the client's methods download uses
        "registry.example/octo-org/app:v1",
        tmp_path / "kit",
        issuer="https://token.actions.githubusercontent.com",
        material=TrustMaterial(jwks={"keys": []}),
    )


def test_download_refuses_a_flood_of_referrers_and_leaves_nothing(tmp_path: Path) -> None:
    bundle = dump(world().signature)
    registry = _Registry([({"n": str(i)}, bundle) for i in range(257)])
    with pytest.raises(RegistryError, match="more than the 256 a kit holds"):
        _download(registry, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_leaves_out_a_referrer_the_kit_reader_would_refuse(tmp_path: Path) -> None:
    bundle = dump(world().signature)
    registry = _Registry([({"ok": "yes"}, bundle), ({"x": 5}, bundle)])
    report = _download(registry, tmp_path)
    assert report.bundles == 1 and len(report.skipped) == 1
    assert "annotations" in report.skipped[0]


def test_a_referrer_listed_by_a_sha512_digest_is_kept_under_its_algorithm(tmp_path: Path) -> None:
    """sha512 is an OCI digest too: the kit stores the manifest under blobs/sha512 (it was a
    FileNotFoundError traceback, red team) and the kit reader accepts the kit."""
    import hashlib

    from opk_sign.verify.kit import KitSource

    registry = _Registry([({"ok": "yes"}, dump(world().signature))])
    listed = registry.listed[0]
    data = registry.manifests[listed.digest]
    sha512 = "sha512:" + hashlib.sha512(data).hexdigest()
    registry.manifests[sha512] = data
    registry.listed = [
        Descriptor(listed.media_type, sha512, listed.size, artifact_type=listed.artifact_type)
    ]
    report = _download(registry, tmp_path)
    assert report.bundles == 1 and not report.skipped
    assert (tmp_path / "kit" / "blobs" / "sha512" / sha512.removeprefix("sha512:")).is_file()
    KitSource(tmp_path / "kit")  # the integrity scan passes


def test_an_index_listing_one_child_many_times_gives_a_kit_its_reader_accepts(
    tmp_path: Path,
) -> None:
    """Each manifest once: a child repeated 40 times with 256 referrers made a 10,241-entry
    index.json that `verify --from-dir` then refused (red team)."""
    from opk_sign.oci.digest import sha256_digest
    from opk_sign.verify.kit import KitSource

    registry = _Registry([({"n": str(i)}, dump(world().signature)) for i in range(256)])
    child = {
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": registry.digest,
        "size": len(registry.image),
        "platform": {"os": "linux", "architecture": "amd64"},
    }
    index_type = "application/vnd.oci.image.index.v1+json"
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": index_type, "manifests": [child] * 40}
    ).encode()
    top = sha256_digest(index)
    registry.manifests[top] = index
    plain = registry.pull_manifest

    def pull(ref: Any, digest: str | None = None) -> tuple[Descriptor, bytes]:
        if digest is None:
            return Descriptor(index_type, top, len(index)), index
        return plain(ref, digest)

    registry.pull_manifest = pull  # type: ignore[method-assign]
    report = _download(registry, tmp_path)
    assert len(report.manifests) == 2 and report.bundles == 256
    KitSource(tmp_path / "kit")


def test_a_kit_whose_blobs_hold_too_much_is_refused_before_they_are_hashed(
    tmp_path: Path,
) -> None:
    """A kit holds manifests and bundles, never layers: 20,000 sparse 4 MiB blobs took minutes
    to hash on every verification (red team). Refused (12) from their sizes."""
    import time

    from opk_sign.errors import FormatError
    from opk_sign.verify.kit import KitSource

    _download(_Registry([({"ok": "yes"}, dump(world().signature))]), tmp_path)
    blobs = tmp_path / "kit" / "blobs" / "sha256"
    for i in range(70):  # 280 MiB apparent, a few KiB on disk
        with open(blobs / f"{i:064x}", "wb") as sparse:
            sparse.truncate(4 << 20)
    started = time.monotonic()
    with pytest.raises(FormatError, match="blobs hold more than"):
        KitSource(tmp_path / "kit")
    assert time.monotonic() - started < 5
