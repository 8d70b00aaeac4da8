"""The offline kit: an image's signatures and the trust material to verify them, in a directory
(docs/offline.md), written by ``opk-sign download`` and read by ``opk-sign verify --from-dir``.

Layout: an OCI image layout holding the image's manifests (the index and every platform
manifest, not the layers), each opk-sign referrer manifest and its bundle, all content-addressed;
and ``opk-sign/`` with the issuer's JWKS, its JWKS archive, the trusted TSA certificates and the
trust repository's policy for the name, when there are any. ``opk-sign/kit.json`` describes the
kit for people; nothing in it decides anything: the image is named by the digest the verifier
gives, every blob is checked against its digest, every bundle is verified in full, and the trust
files have fixed names.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from opk_sign.bundle import (
    ATTESTATION_ARTIFACT_TYPE,
    BUNDLE_MEDIA_TYPE,
    SIGNATURE_ARTIFACT_TYPE,
    Bundle,
)
from opk_sign.errors import (
    FormatError,
    ImageNotFoundError,
    NotFoundError,
    UsageError,
)
from opk_sign.jose import parse_json_object
from opk_sign.oci import limits, mediatypes
from opk_sign.oci.client import RefLike, RegistryClient, referrer_descriptor
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.digest import digest_of, sha256_digest, split_digest
from opk_sign.oci.layout import LayoutReader, LayoutWriter
from opk_sign.oci.manifest import (
    ImageIndex,
    ImageManifest,
    Manifest,
    media_type_of,
    parse_manifest,
)
from opk_sign.oci.reference import Reference, as_reference

if TYPE_CHECKING:
    from opk_sign.trust.client import TrustClient
    from opk_sign.trust.jwks_archive import JWKSArchive

KIT_MEDIA_TYPE: Final = "application/vnd.dev.opk-sign.kit.v1+json"
#: The kit's own files, at fixed names under the layout.
KIT_DIR: Final = "opk-sign"
KIT_FILE: Final = f"{KIT_DIR}/kit.json"
JWKS_FILE: Final = f"{KIT_DIR}/jwks.json"
JWKS_ARCHIVE_FILE: Final = f"{KIT_DIR}/jwks-archive.json"
TSA_CERTS_FILE: Final = f"{KIT_DIR}/tsa-certs.pem"
POLICY_FILE: Final = f"{KIT_DIR}/policy.json"
_KIT_MAX_BYTES: Final = 4 << 20
_MAX_BLOBS: Final = 20_000
#: The opk-sign referrers a kit keeps (other referrers are not ours to judge).
_KINDS: Final = (SIGNATURE_ARTIFACT_TYPE, ATTESTATION_ARTIFACT_TYPE)
#: The annotation naming an image in a layout's index (image-spec ``annotations.md``).
_REF_NAME: Final = "org.opencontainers.image.ref.name"


# --- writing ------------------------------------------------------------------------------------


@dataclass
class KitReport:
    """What ``download`` wrote (also ``kit.json``)."""

    image: str
    reference: str
    digest: str
    directory: Path
    issuer: str
    manifests: list[dict[str, Any]] = field(default_factory=list)
    bundles: int = 0
    skipped: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    policy: dict[str, Any] | None = None
    #: The digest of every file of the kit but kit.json and the blobs (named by theirs).
    digests: dict[str, str] = field(default_factory=dict)
    downloaded: str = field(
        default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )

    @property
    def verify_command(self) -> str:
        return f"opk-sign verify --from-dir {self.directory} {self.reference}@{self.digest}"

    def to_dict(self) -> dict[str, Any]:
        """kit.json's description (``digests`` is added when the files are written)."""
        doc: dict[str, Any] = {
            "mediaType": KIT_MEDIA_TYPE,
            "image": self.image,
            "reference": self.reference,
            "digest": self.digest,
            "issuer": self.issuer,
            "downloaded": self.downloaded,
            "manifests": self.manifests,
            "bundles": self.bundles,
            "skipped": self.skipped,
            "files": self.files,
            "verifyCommand": self.verify_command,
        }
        if self.policy is not None:
            doc["policy"] = self.policy
        return doc


@dataclass(frozen=True)
class TrustMaterial:
    """What a kit carries besides the image's own data (each part optional)."""

    jwks: dict[str, Any] | None = None
    jwks_archive: JWKSArchive | None = None
    tsa_pem: bytes | None = None
    trust: TrustClient | None = None


def download_kit(
    client: RegistryClient,
    image: str,
    directory: Path,
    *,
    issuer: str,
    material: TrustMaterial,
) -> KitReport:
    """Write the kit of ``image`` to ``directory`` (new or empty): all or nothing, since it is
    built beside it and moved into place last."""
    ref = Reference.parse(image)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise UsageError(
            f"{directory} exists and is not an empty directory",
            hint="give a new directory: nothing is overwritten",
        )
    staging = directory.with_name(f".{directory.name}.partial-{os.getpid()}-{time.monotonic_ns()}")
    try:
        report = _write(
            client, ref, image, staging=staging, final=directory, issuer=issuer, material=material
        )
        if directory.exists():
            directory.rmdir()
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _write(
    client: RegistryClient,
    ref: Reference,
    image: str,
    *,
    staging: Path,
    final: Path,
    issuer: str,
    material: TrustMaterial,
) -> KitReport:
    try:
        top, data = client.pull_manifest(ref)
    except NotFoundError as err:
        raise ImageNotFoundError(f"{ref}: no such image ({err.message})") from None
    layout = LayoutWriter(staging)
    report = KitReport(image, ref.name, top.digest, final, issuer)
    entries = [
        Descriptor(top.media_type, top.digest, len(data), annotations=_ref_name(ref)),
    ]
    layout.put(data, top.digest)
    manifests: list[tuple[Descriptor, str | None]] = [(top, None)]
    parsed = client.parse(top, data)
    if isinstance(parsed, ImageIndex):
        for child in parsed.manifests:
            if child.media_type not in mediatypes.MANIFEST_MEDIA_TYPES:
                continue
            child_descriptor, child_data = client.pull_manifest(ref, child.digest)
            layout.put(child_data, child.digest)
            manifests.append((child_descriptor, str(child.platform) if child.platform else None))
    for descriptor, platform in manifests:
        report.manifests.append(
            {"digest": descriptor.digest, "mediaType": descriptor.media_type, "platform": platform}
        )
        for referrer in client.list_referrers(ref, descriptor.digest):
            if referrer.artifact_type not in _KINDS:
                continue
            stored = _store_bundle(client, ref, descriptor.digest, referrer, layout)
            if isinstance(stored, str):
                report.skipped.append(f"{referrer.digest}: {stored}")
                continue
            entries.append(stored)
            report.bundles += 1
    _write_trust(staging, ref, report, material)
    # kit.json is covered whole: its description's digest is annotated in index.json, whose
    # digest (with every other file's) kit.json lists.
    description = report.to_dict()
    layout.write_index(entries, {DESCRIPTION_ANNOTATION: _description_digest(description)})
    report.digests = {
        name: sha256_digest((staging / name).read_bytes()) for name in _listed(staging)
    }
    (staging / KIT_FILE).write_text(_canonical({**description, "digests": report.digests}))
    return report


#: The index.json annotation holding the digest of kit.json's description (all but "digests").
DESCRIPTION_ANNOTATION: Final = "dev.opk-sign.kit.description"


def _canonical(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _description_digest(description: dict[str, Any]) -> str:
    return sha256_digest(_canonical(description).encode())


#: Files of a kit besides the content-addressed blobs; kit.json lists each one's digest.
_NAMED: Final = (
    "oci-layout",
    "index.json",
    JWKS_FILE,
    JWKS_ARCHIVE_FILE,
    TSA_CERTS_FILE,
    POLICY_FILE,
)


def _listed(root: Path) -> list[str]:
    return [name for name in _NAMED if (root / name).exists()]


def _ref_name(ref: Reference) -> dict[str, str]:
    return {_REF_NAME: ref.tag} if ref.tag else {}


def _store_bundle(
    client: RegistryClient, ref: Reference, subject: str, referrer: Descriptor, layout: LayoutWriter
) -> Descriptor | str:
    """Store a referrer manifest and its bundle when both parse as opk-sign's; else say why not
    (the verifier would refuse the bundle anyway: a kit keeps what can be judged)."""
    descriptor, data = client.pull_manifest(ref, referrer.digest)
    try:
        manifest = parse_manifest(data, descriptor.media_type)
        layer = _bundle_layer(manifest, subject)
        blob = client.get_blob(ref, layer.digest, limits.MAX_BUNDLE_BYTES)
        Bundle.from_json(blob)
    except (FormatError, UsageError) as err:
        return err.message
    layout.put(blob, layer.digest)
    layout.put(data, descriptor.digest)
    return referrer_descriptor(manifest, descriptor.media_type, descriptor.digest)


def _bundle_layer(manifest: Manifest, subject: str) -> Descriptor:
    if not isinstance(manifest, ImageManifest) or manifest.subject is None:
        raise FormatError("not an artifact manifest with a subject")
    if manifest.subject.digest != subject:
        raise FormatError(f"its subject is {manifest.subject.digest}, not {subject}")
    if len(manifest.layers) != 1 or manifest.layers[0].media_type != BUNDLE_MEDIA_TYPE:
        raise FormatError(f"expected one layer of type {BUNDLE_MEDIA_TYPE}")
    return manifest.layers[0]


def _write_trust(root: Path, ref: Reference, report: KitReport, material: TrustMaterial) -> None:
    (root / KIT_DIR).mkdir()
    if material.jwks is not None:
        (root / JWKS_FILE).write_text(json.dumps(material.jwks, indent=2) + "\n")
        report.files["jwks"] = JWKS_FILE
    if material.jwks_archive is not None:
        (root / JWKS_ARCHIVE_FILE).write_bytes(material.jwks_archive.to_json())
        report.files["jwksArchive"] = JWKS_ARCHIVE_FILE
    if material.tsa_pem:
        (root / TSA_CERTS_FILE).write_bytes(material.tsa_pem)
        report.files["tsaCertificates"] = TSA_CERTS_FILE
    if material.trust is not None:
        rule = material.trust.mapping().lookup(ref)
        if rule is not None:
            document = material.trust.policy_document(rule.policy)
            (root / POLICY_FILE).write_text(json.dumps(document, indent=2) + "\n")
            report.files["policy"] = POLICY_FILE
            report.policy = {
                "rule": rule.pattern,
                "policy": rule.policy,
                "signedName": rule.name,
                "signedRepositories": list(rule.signed_repositories),
            }


# --- reading ------------------------------------------------------------------------------------


class KitSource:
    """A kit read as an image source for :func:`opk_sign.verify.image.verify_image`: manifests
    and bundles by digest, each checked against it; referrers found from their manifests'
    subjects, not from anything the kit's index says about them."""

    def __init__(self, directory: Path) -> None:
        if not directory.is_dir():
            raise UsageError(f"--from-dir {directory}: no such directory")
        self.directory = directory
        try:
            self.description = self._check_files()
            self.layout = LayoutReader(directory)
            described = {k: v for k, v in self.description.items() if k != "digests"}
            annotated = self.layout.annotations().get(DESCRIPTION_ANNOTATION)
            if annotated != _description_digest(described):
                raise FormatError(
                    f"{KIT_FILE} does not match the description index.json names (altered)"
                )
            self._referrers: dict[str, list[Descriptor]] = {}
            for entry in self.layout.index():
                if entry.artifact_type not in _KINDS:
                    continue
                data = self.layout.blob(entry.digest, limits.MAX_MANIFEST_BYTES)
                manifest = parse_manifest(data, entry.media_type)
                subject = getattr(manifest, "subject", None)
                if subject is None:
                    raise FormatError(f"referrer {entry.digest} has no subject")
                found = referrer_descriptor(manifest, entry.media_type, entry.digest)
                self._referrers.setdefault(subject.digest, []).append(found)
        except FormatError as err:
            raise FormatError(f"kit {directory}: {err.message}") from None

    def _check_files(self) -> dict[str, Any]:
        """kit.json, read strictly, and every file of the kit against it: each named file has
        the digest kit.json lists, no file is there that it does not list, and every blob
        matches its name. A kit changed after ``download`` is refused whole (exit 12), whatever
        was changed; one rewritten whole is caught by the bundles' own checks, unless its trust
        files were replaced too: pass your own --jwks / --tsa-certs (docs/offline.md)."""
        root = self.directory
        path = root / KIT_FILE
        if path.is_symlink() or not path.is_file():
            raise FormatError(f"{KIT_FILE} is missing: not a kit written by `opk-sign download`")
        data = _head(path, _KIT_MAX_BYTES + 1)
        if len(data) > _KIT_MAX_BYTES:
            raise FormatError(f"{KIT_FILE} is larger than {_KIT_MAX_BYTES} bytes")
        try:
            doc = parse_json_object(data, KIT_FILE)
        except FormatError as err:
            raise FormatError(f"{err.message} (altered after download?)") from None
        if doc.get("mediaType") != KIT_MEDIA_TYPE:
            raise FormatError(f"{KIT_FILE}: mediaType is not {KIT_MEDIA_TYPE}")
        if data.decode() != _canonical(doc):
            raise FormatError(f"{KIT_FILE} is not as `opk-sign download` writes it (altered?)")
        digests = doc.get("digests")
        if not isinstance(digests, dict) or set(digests) - set(_NAMED):
            raise FormatError(f"{KIT_FILE}: 'digests' must map the kit's files to their digests")
        for name in _NAMED:
            present = (root / name).exists() or (root / name).is_symlink()
            if present != (name in digests):
                raise FormatError(
                    f"{name} is {'there' if present else 'missing'}, but {KIT_FILE} "
                    f"{'does not list it' if present else 'lists it'} (altered after download)"
                )
            if not present:
                continue
            if (root / name).is_symlink() or not (root / name).is_file():
                raise FormatError(f"{name} is not a regular file")
            content = _head(root / name, _KIT_MAX_BYTES + 1)
            if len(content) > _KIT_MAX_BYTES or sha256_digest(content) != digests[name]:
                raise FormatError(f"{name} does not match {KIT_FILE} (altered after download)")
        for entry in root.iterdir():
            if entry.name not in {"oci-layout", "index.json", "blobs", KIT_DIR}:
                raise FormatError(f"{entry.name} is not part of a kit (added after download)")
        for entry in (root / KIT_DIR).iterdir():
            if f"{KIT_DIR}/{entry.name}" not in {*_NAMED, KIT_FILE}:
                raise FormatError(f"{KIT_DIR}/{entry.name} is not part of a kit")
        blobs = sorted((root / "blobs").rglob("*")) if (root / "blobs").is_dir() else []
        if len(blobs) > _MAX_BLOBS:
            raise FormatError(f"more than {_MAX_BLOBS} blobs")
        for blob in blobs:
            if blob.is_dir() and not blob.is_symlink():
                continue
            digest = f"{blob.parent.name}:{blob.name}"
            content = _head(blob, limits.MAX_MANIFEST_BYTES + limits.MAX_BUNDLE_BYTES)
            if blob.is_symlink() or not blob.is_file() or digest_of_blob(content, digest) != digest:
                raise FormatError(f"blob {digest} does not match its name (altered after download)")
        return doc

    def pull_manifest(self, ref: RefLike, digest: str | None = None) -> tuple[Descriptor, bytes]:
        wanted = digest or as_reference(ref).digest
        if wanted is None:
            raise UsageError("a kit is read by digest: give NAME@sha256:...")
        if digest is None and not self.layout.has(wanted):
            raise NotFoundError(f"the kit in {self.directory} holds no manifest {wanted}")
        data = self.layout.blob(wanted, limits.MAX_MANIFEST_BYTES)
        try:
            media_type = media_type_of(data)
        except FormatError as err:
            raise FormatError(f"manifest {wanted} of the kit: {err.message}") from None
        return Descriptor(media_type, wanted, len(data)), data

    @staticmethod
    def parse(descriptor: Descriptor, data: bytes) -> Manifest:
        return parse_manifest(data, descriptor.media_type)

    def list_referrers(
        self, repo: RefLike, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        found = self._referrers.get(digest, [])
        return [d for d in found if artifact_type is None or d.artifact_type == artifact_type]

    def get_blob(
        self, repo: RefLike, digest: str, max_size: int = limits.MAX_BUNDLE_BYTES
    ) -> bytes:
        return self.layout.blob(digest, max_size)

    def trust_file(self, name: str) -> Path | None:
        """One of the kit's trust files (:data:`JWKS_FILE` ...), if the kit has it; never a
        symlink, which could point anywhere."""
        path = self.directory / name
        return path if path.is_file() and not path.is_symlink() else None

    def issuer(self) -> str | None:
        """The issuer ``kit.json`` says the JWKS is for (checked by the caller against the
        issuer verification trusts)."""
        issuer = self.description.get("issuer")
        return issuer if isinstance(issuer, str) else None

    def digests(self) -> set[str]:
        """The image digests the kit is of: its top-level manifest and each platform's."""
        found = {self.description.get("digest")}
        for item in self.description.get("manifests") or []:
            found.add(item.get("digest") if isinstance(item, dict) else None)
        return {d for d in found if isinstance(d, str)}


def _head(path: Path, size: int) -> bytes:
    """At most ``size`` bytes of a file (a kit is hostile input: no file is read whole)."""
    try:
        with path.open("rb") as handle:
            return handle.read(size)
    except OSError as err:
        raise FormatError(f"cannot read {path}: {err.strerror}") from None


def digest_of_blob(content: bytes, name: str) -> str | None:
    """The digest of ``content`` by the algorithm ``name`` says, None for a name that is no
    digest."""
    try:
        algorithm, _ = split_digest(name)
        return digest_of(content, algorithm)
    except (UsageError, ValueError):
        return None


__all__ = [
    "KIT_FILE",
    "KitReport",
    "KitSource",
    "TrustMaterial",
    "download_kit",
]
