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
import stat
import tempfile
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
    RegistryError,
    UsageError,
)
from opk_sign.jose import parse_json_object
from opk_sign.oci import limits, mediatypes
from opk_sign.oci.client import RefLike, RegistryClient, referrer_descriptor
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.digest import digest_of, is_digest, sha256_digest, split_digest
from opk_sign.oci.layout import (
    MAX_INDEX_ENTRIES,
    LayoutReader,
    LayoutWriter,
    read_regular_file,
)
from opk_sign.oci.manifest import (
    ImageIndex,
    ImageManifest,
    Manifest,
    media_type_of,
    parse_manifest,
)
from opk_sign.oci.reference import Reference, as_reference
from opk_sign.verify.image import MAX_BUNDLES_PER_MANIFEST

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
#: Trusted transparency log and witness keys (docs/transparency.md), when the kit carries them.
TLOG_KEYS_FILE: Final = f"{KIT_DIR}/tlog-keys.txt"
POLICY_FILE: Final = f"{KIT_DIR}/policy.json"
_KIT_MAX_BYTES: Final = 4 << 20
_MAX_BLOBS: Final = 20_000
_MAX_BLOB_BYTES: Final = max(limits.MAX_MANIFEST_BYTES, limits.MAX_BUNDLE_BYTES)
#: All blobs together: manifests and bundles, never layers (a large real kit is tens of MiB;
#: 20,000 sparse 4 MiB files would otherwise take minutes to hash).
_MAX_KIT_BYTES: Final = 256 * 1024 * 1024
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
    tlog_keys: bytes | None = None


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
    directory = _new_directory(directory)
    staging = directory.with_name(f".{directory.name}.partial-{os.getpid()}-{time.monotonic_ns()}")
    try:
        report = _write(
            client, ref, image, staging=staging, final=directory, issuer=issuer, material=material
        )
        try:
            if directory.exists():
                directory.rmdir()  # still empty, or this fails: nothing of the user's is lost
            os.replace(staging, directory)
        except OSError as err:
            raise UsageError(
                f"cannot move the kit into {directory}: {err.strerror} (something was written "
                "there meanwhile?)",
                hint="give a new directory",
            ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _new_directory(directory: Path) -> Path:
    """Where a kit may go: a new or empty directory, not a symlink, in an existing parent."""
    if directory.is_symlink():
        raise UsageError(f"{directory} is a symlink", hint="give the directory itself")
    absolute = Path(os.path.abspath(directory))  # ".." collapsed: the name is the real one
    if not absolute.name or absolute.parent == absolute:
        raise UsageError(f"{directory} cannot hold a kit", hint="give a new directory")
    if absolute.exists() and (not absolute.is_dir() or any(absolute.iterdir())):
        raise UsageError(
            f"{directory} exists and is not an empty directory",
            hint="give a new directory: nothing is overwritten",
        )
    if not absolute.parent.is_dir():
        raise UsageError(
            f"{absolute.parent} does not exist", hint="create it first, or give another --dir"
        )
    return absolute


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
        seen = {top.digest}
        for child in parsed.manifests:
            # Each manifest once, however often an index lists it (a repeated child would
            # repeat its referrers past what the kit reader accepts).
            if child.media_type not in mediatypes.MANIFEST_MEDIA_TYPES or child.digest in seen:
                continue
            seen.add(child.digest)
            child_descriptor, child_data = client.pull_manifest(ref, child.digest)
            layout.put(child_data, child.digest)
            manifests.append((child_descriptor, str(child.platform) if child.platform else None))
    for descriptor, platform in manifests:
        report.manifests.append(
            {"digest": descriptor.digest, "mediaType": descriptor.media_type, "platform": platform}
        )
        referrers = [
            r for r in client.list_referrers(ref, descriptor.digest) if r.artifact_type in _KINDS
        ]
        if len(referrers) > MAX_BUNDLES_PER_MANIFEST:
            # As verification does (verify.image): more than it would try is a flood, and the
            # outcome of a kit holding them would be unknown.
            raise RegistryError(
                f"{descriptor.digest} has {len(referrers)} opk-sign referrers, more than the "
                f"{MAX_BUNDLES_PER_MANIFEST} a kit holds",
                hint="someone may be flooding the image with referrers: list them with "
                "`opk-sign inspect` and ask the registry to remove the junk",
            )
        for referrer in referrers:
            stored = _store_bundle(client, ref, descriptor.digest, referrer, layout)
            if isinstance(stored, str):
                report.skipped.append(f"{referrer.digest}: {stored}")
                continue
            entries.append(stored)
            report.bundles += 1
    if len(entries) > MAX_INDEX_ENTRIES:  # what the reader refuses is never written
        raise RegistryError(
            f"{ref}: {len(entries)} manifests and bundles, more than the {MAX_INDEX_ENTRIES} a "
            "kit holds",
            hint="download a single platform's manifest by its digest",
        )
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
    TLOG_KEYS_FILE,
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
    entry = referrer_descriptor(manifest, descriptor.media_type, descriptor.digest)
    try:
        Descriptor.from_dict(entry.to_dict())  # what the kit's reader will accept
    except (FormatError, UsageError) as err:
        return err.message
    layout.put(blob, layer.digest)
    layout.put(data, descriptor.digest)
    return entry


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
    if material.tlog_keys:
        (root / TLOG_KEYS_FILE).write_bytes(material.tlog_keys)
        report.files["tlogKeys"] = TLOG_KEYS_FILE
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
        self._trust: dict[str, bytes] = {}
        self._private: Path | None = None
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
        the digest kit.json lists, no file is there that it does not list, every blob matches
        its name, nothing is a symlink or anything but a regular file or directory. A kit
        changed after ``download`` is refused whole (exit 12), whatever was changed. Each file
        is read once, bounded; the trust files' checked bytes are kept (:meth:`trust_file`)."""
        root = self.directory
        for directory in (root, root / "blobs", root / KIT_DIR):
            _require_directory(directory)
        data = read_regular_file(root / KIT_FILE, _KIT_MAX_BYTES, KIT_FILE)
        try:
            doc = parse_json_object(data, KIT_FILE)
            text = data.decode()
        except (FormatError, UnicodeDecodeError) as err:
            raise FormatError(f"{KIT_FILE} is not JSON we accept ({err}): altered?") from None
        if doc.get("mediaType") != KIT_MEDIA_TYPE:
            raise FormatError(f"{KIT_FILE}: mediaType is not {KIT_MEDIA_TYPE}")
        if text != _canonical(doc):
            raise FormatError(f"{KIT_FILE} is not as `opk-sign download` writes it (altered?)")
        _check_description(doc)
        digests = doc["digests"]
        for name in _NAMED:
            present = os.path.lexists(root / name)
            if present != (name in digests):
                raise FormatError(
                    f"{name} is {'there' if present else 'missing'}, but {KIT_FILE} "
                    f"{'does not list it' if present else 'lists it'} (altered after download)"
                )
            if not present:
                continue
            content = read_regular_file(root / name, _KIT_MAX_BYTES, name)
            if sha256_digest(content) != digests[name]:
                raise FormatError(f"{name} does not match {KIT_FILE} (altered after download)")
            self._trust[name] = content
        _only(root, {"oci-layout", "index.json", "blobs", KIT_DIR})
        _only(root / KIT_DIR, {n.removeprefix(f"{KIT_DIR}/") for n in (*_NAMED, KIT_FILE)})
        # Counted and sized first, hashed after: a flood is refused before any of it is read.
        found: list[tuple[str, Path]] = []
        total = 0
        with os.scandir(root / "blobs") as algorithms:
            for algorithm in algorithms:
                _require_directory(Path(algorithm.path))
                with os.scandir(algorithm.path) as blobs:
                    for blob in blobs:
                        found.append((f"{algorithm.name}:{blob.name}", Path(blob.path)))
                        if len(found) > _MAX_BLOBS:
                            raise FormatError(f"more than {_MAX_BLOBS} blobs")
                        total += blob.stat(follow_symlinks=False).st_size
        if total > _MAX_KIT_BYTES:
            raise FormatError(
                f"the kit's blobs hold more than {_MAX_KIT_BYTES} bytes: not a kit `opk-sign "
                "download` writes (it holds manifests and bundles, never layers)"
            )
        for digest, path in found:
            content = read_regular_file(path, _MAX_BLOB_BYTES, f"blob {digest}")
            if digest_of_blob(content, digest) != digest:
                raise FormatError(f"blob {digest} does not match its name (altered after download)")
        return doc

    def pull_manifest(self, ref: RefLike, digest: str | None = None) -> tuple[Descriptor, bytes]:
        wanted = digest or as_reference(ref).digest
        if wanted is None:
            raise UsageError("a kit is read by digest: give NAME@sha256:...")
        if not self.layout.has(wanted):
            if digest is None and wanted not in self.digests():
                raise NotFoundError(f"the kit in {self.directory} holds no manifest {wanted}")
            raise FormatError(f"the kit has no blob {wanted}, which it lists (altered)")
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
        """A copy of one of the kit's trust files (:data:`JWKS_FILE` ...) as checked when the
        kit was opened, in a private directory of this reader (so that what is loaded is what
        was checked, whatever happens to the kit meanwhile); None if the kit has none."""
        content = self._trust.get(name)
        if content is None:
            return None
        if self._private is None:
            self._private = Path(tempfile.mkdtemp(prefix="opk-sign-kit-"))
        path = self._private / name.replace("/", "_")
        path.write_bytes(content)
        return path

    def close(self) -> None:
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)
            self._private = None

    def __enter__(self) -> KitSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

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


def _require_directory(path: Path) -> None:
    """``path`` is a directory itself, not a symlink to one (which could lead anywhere)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        raise FormatError(f"{path} is missing: not a kit written by `opk-sign download`") from None
    if not stat.S_ISDIR(mode):
        raise FormatError(f"{path} is not a directory (a symlink or a file): altered")


def _only(directory: Path, names: set[str]) -> None:
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name not in names:
                raise FormatError(f"{entry.path} is not part of a kit (added after download)")


def _check_description(doc: dict[str, Any]) -> None:
    """The members verification reads have the types download writes (a resealed kit.json
    is still hostile input)."""
    digests = doc.get("digests")
    if not isinstance(digests, dict) or set(digests) - set(_NAMED):
        raise FormatError(f"{KIT_FILE}: 'digests' must map the kit's files to their digests")
    manifests = doc.get("manifests")
    if (
        not isinstance(doc.get("digest"), str)
        or not is_digest(doc["digest"])
        or not isinstance(doc.get("issuer"), str)
        or not isinstance(manifests, list)
        or not all(
            isinstance(m, dict) and isinstance(m.get("digest"), str) and is_digest(m["digest"])
            for m in manifests
        )
        or not all(isinstance(v, str) and is_digest(v) for v in digests.values())
    ):
        raise FormatError(f"{KIT_FILE}: not a kit description opk-sign writes (altered)")


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
