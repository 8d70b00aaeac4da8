"""BuildKit attestation manifests and the provenance BuildKit writes, as pure logic.

Docker Official Images are built by ``docker buildx build --provenance=mode=max --sbom=...``:
BuildKit stores each platform's attestations in an *attestation manifest* listed in the image
index after the runnable manifests (BuildKit's docs/attestations/attestation-storage.md):

- its index descriptor has platform ``unknown/unknown`` and the annotations
  ``vnd.docker.reference.type: attestation-manifest`` and ``vnd.docker.reference.digest: <the
  platform manifest's digest>``;
- the manifest's layers are in-toto statements (``application/vnd.in-toto+json``), each annotated
  ``in-toto.io/predicate-type``; newer BuildKit also sets ``artifactType:
  application/vnd.docker.attestation.manifest.v1+json`` and a ``subject`` (so registries with the
  referrers API list it as a referrer of the platform manifest too).

The annotations are hints (they are not signed by anything of their own): what counts is the
statement's ``subject`` (it must name the platform manifest) and ``predicateType``, read from a
blob whose digest the attestation manifest names, whose digest the signed index names.

Provenance: BuildKit writes SLSA provenance v0.2 (``invocation.configSource``) or v1
(``buildDefinition.externalParameters.configSource``); the source repository and commit come from
``configSource`` (``uri`` without its ``#ref`` fragment, ``digest.sha1``) when the build context was
a Git URL, else from BuildKit's ``vcs`` metadata (``vcs:source`` / ``vcs:revision`` build options,
which BuildKit does not check: :attr:`BuildSource.origin` says which).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from opk_sign.errors import FormatError, PayloadMismatchError, PolicyError, UsageError

# The storage format's names and the index/manifest walking live in opk_sign.oci.buildkit (oci
# may not import payloads); they are re-exported here, beside the statements they lead to.
from opk_sign.oci.buildkit import (
    ATTESTATION_ARTIFACT_TYPE,
    ATTESTATION_MANIFEST,
    INTOTO_MEDIA_TYPE,
    MAX_ATTESTATION_LAYERS,
    PREDICATE_TYPE_ANNOTATION,
    REFERENCE_DIGEST,
    REFERENCE_TYPE,
    AttestationLayer,
    attestation_layers,
    attestation_target,
    attestations_in_index,
    is_attestation_descriptor,
)

__all__ = [
    "ATTESTATION_ARTIFACT_TYPE",
    "ATTESTATION_MANIFEST",
    "INTOTO_MEDIA_TYPE",
    "MAX_ATTESTATION_LAYERS",
    "PREDICATE_TYPE_ANNOTATION",
    "REFERENCE_DIGEST",
    "REFERENCE_TYPE",
    "AttestationLayer",
    "attestation_layers",
    "attestation_target",
    "attestations_in_index",
    "is_attestation_descriptor",
]

STATEMENT_V01: Final = "https://in-toto.io/Statement/v0.1"
STATEMENT_V1: Final = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V02: Final = "https://slsa.dev/provenance/v0.2"
SLSA_PROVENANCE_V1: Final = "https://slsa.dev/provenance/v1"
SPDX_DOCUMENT: Final = "https://spdx.dev/Document"
#: ``--attestation slsa`` style aliases are not taken: a predicate type is always a full URI. These
#: are the types that count as "the provenance" for the source checks.
PROVENANCE_TYPES: Final = (SLSA_PROVENANCE_V1, SLSA_PROVENANCE_V02)

#: BuildKit's metadata keys for its extension fields (v0.2 and v1).
_METADATA_V02: Final = "https://mobyproject.org/buildkit@v1#metadata"
_METADATA_V1: Final = "buildkit_metadata"

#: Bounds on what is read: an attestation manifest lists a few statements; an SBOM may be large.
MAX_STATEMENT_BYTES: Final = 32 * 1024 * 1024
_HEX: Final = re.compile(r"[0-9a-f]{64}")
_COMMIT: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class BuildKitStatement:
    """An in-toto statement as BuildKit writes it (Statement v0.1 or v1)."""

    statement_type: str
    predicate_type: str
    subject_digests: tuple[str, ...]  # OCI form, sha256:<hex>
    predicate: Mapping[str, Any]

    def names(self, digest: str) -> bool:
        return digest in self.subject_digests


def parse_statement(data: bytes) -> BuildKitStatement:
    """A statement blob, checked for shape (not for what it says: see :func:`check_statement`)."""
    if len(data) > MAX_STATEMENT_BYTES:
        raise FormatError(f"in-toto statement of {len(data)} bytes, over {MAX_STATEMENT_BYTES}")
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        raise FormatError("in-toto statement: not JSON") from None
    if not isinstance(doc, dict):
        raise FormatError("in-toto statement: not a JSON object")
    statement_type = doc.get("_type")
    if statement_type not in (STATEMENT_V01, STATEMENT_V1):
        raise FormatError(f"in-toto statement: unknown _type {statement_type!r}")
    predicate_type = doc.get("predicateType")
    if not isinstance(predicate_type, str) or not predicate_type:
        raise FormatError("in-toto statement: predicateType must be a non-empty string")
    subjects = doc.get("subject")
    if not isinstance(subjects, list) or not subjects or len(subjects) > 1024:
        raise FormatError("in-toto statement: subject must be a list of 1 to 1024 subjects")
    digests = []
    for subject in subjects:
        digest = subject.get("digest") if isinstance(subject, dict) else None
        if not isinstance(digest, dict):
            raise FormatError("in-toto statement: each subject needs a digest object")
        value = digest.get("sha256")
        if isinstance(value, str) and _HEX.fullmatch(value):
            digests.append(f"sha256:{value}")
    predicate = doc.get("predicate", {})
    if not isinstance(predicate, dict):
        raise FormatError("in-toto statement: predicate must be a JSON object")
    return BuildKitStatement(statement_type, predicate_type, tuple(digests), predicate)


def check_statement(
    statement: BuildKitStatement, *, subject: str, predicate_type: str
) -> BuildKitStatement:
    """The statement is about ``subject`` and of ``predicate_type``; else a refusal naming both."""
    if statement.predicate_type != predicate_type:
        raise PayloadMismatchError(
            f"attestation statement: predicateType is {statement.predicate_type!r}, "
            f"not {predicate_type!r} (the layer's annotation said otherwise)"
        )
    if not statement.names(subject):
        named = ", ".join(statement.subject_digests) or "no sha256 digest"
        raise PayloadMismatchError(
            f"attestation statement: its subject is {named}, not the platform manifest "
            f"{subject} (an attestation of another image or platform)"
        )
    return statement


# --- provenance ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildSource:
    """The repository and commit a BuildKit provenance says the image was built from."""

    repository: str | None
    commit: str | None
    #: ``configSource`` (BuildKit fetched the Git context itself) or ``vcs`` (the client's hint).
    origin: str

    def to_dict(self) -> dict[str, Any]:
        return {"repository": self.repository, "commit": self.commit, "from": self.origin}


def _get(doc: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(doc, Mapping):
            return None
        doc = doc.get(key)
    return doc


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value and len(value) <= 2048 else None


def provenance_source(predicate_type: str, predicate: Mapping[str, Any]) -> BuildSource | None:
    """Where a BuildKit SLSA provenance (v0.2 or v1) says the build came from; None when it says
    nothing (a local context built without ``vcs:source``)."""
    if predicate_type == SLSA_PROVENANCE_V02:
        config = _get(predicate, "invocation", "configSource")
        vcs = _get(predicate, "metadata", _METADATA_V02, "vcs")
    elif predicate_type == SLSA_PROVENANCE_V1:
        config = _get(predicate, "buildDefinition", "externalParameters", "configSource")
        vcs = _get(predicate, "runDetails", "metadata", _METADATA_V1, "vcs")
    else:
        raise FormatError(f"not a BuildKit provenance type: {predicate_type!r}")
    uri = _text(_get(config, "uri"))
    if uri is not None and not uri.startswith(("http://", "https://", "git@", "ssh://", "git://")):
        uri = None  # a local context names no repository
    if uri is not None:
        repository, _, fragment = uri.partition("#")
        commit = _text(_get(config, "digest", "sha1"))
        if commit is None and _COMMIT.fullmatch(fragment.split(":", 1)[0]):
            commit = fragment.split(":", 1)[0]
        return BuildSource(repository, commit, "configSource")
    source, revision = _text(_get(vcs, "source")), _text(_get(vcs, "revision"))
    if source is None and revision is None:
        return None
    return BuildSource(source, revision, "vcs")


def normalize_repository(url: str) -> str:
    """A Git repository URL compared loosely the way people write it: scheme, ``git@host:``,
    trailing ``.git`` and ``/`` and the host's case do not matter (``https://github.com/o/r.git``
    is ``github.com/o/r``)."""
    text = url.strip()
    text = re.sub(r"^(?:git\+)?(?:https?|ssh|git)://", "", text)
    text = re.sub(r"^[^@/]+@", "", text)  # user@
    if re.match(r"^[^/:]+:(?!\d)", text):  # scp-like host:path
        text = text.replace(":", "/", 1)
    text = text.rstrip("/").removesuffix(".git").rstrip("/")
    host, slash, path = text.partition("/")
    return host.lower() + slash + path


@dataclass(frozen=True)
class SourceRequirement:
    """Policy fields ``source-repository`` and ``source-commit``: what a platform manifest's
    BuildKit provenance must name."""

    repository: str | None = None
    commit: str | None = None

    def __post_init__(self) -> None:
        if self.repository is None and self.commit is None:
            raise UsageError("a source requirement needs source-repository or source-commit")
        if self.commit is not None and not _COMMIT.fullmatch(self.commit):
            raise UsageError(
                f"source-commit {self.commit!r} is not a full lowercase Git commit id",
                hint="40 (SHA-1) or 64 (SHA-256) hex digits, as GitCommit in a library file",
            )

    def check(self, source: BuildSource | None, where: str, platform: str | None = None) -> None:
        """Raise :class:`PolicyError` naming what the provenance says and what was required."""
        del platform  # the same requirement for every platform
        if source is None:
            raise PolicyError(
                f"{where}: the provenance names no source repository or commit; the policy "
                f"requires {self.describe()}"
            )
        if self.repository is not None and (
            source.repository is None
            or normalize_repository(source.repository) != normalize_repository(self.repository)
        ):
            raise PolicyError(
                f"{where}: the provenance names source repository {source.repository!r}; "
                f"the policy requires {self.repository!r}"
            )
        if self.commit is not None and source.commit != self.commit:
            raise PolicyError(
                f"{where}: the provenance names source commit {source.commit!r}; "
                f"the policy requires {self.commit!r}"
            )

    def describe(self) -> str:
        parts = []
        if self.repository is not None:
            parts.append(f"source-repository {self.repository!r}")
        if self.commit is not None:
            parts.append(f"source-commit {self.commit!r}")
        return " and ".join(parts)


def platform_key(platform: str | None) -> str | None:
    """arm64's variant is v8 by default: ``linux/arm64/v8`` and ``linux/arm64`` are one platform."""
    return "linux/arm64" if platform == "linux/arm64/v8" else platform


@dataclass(frozen=True)
class PlatformSources:
    """Source requirements per platform (a library file's per-architecture GitRepo/GitCommit):
    a platform passes when its provenance satisfies one of its alternatives (a shared tag may
    combine entries); a platform with none is refused."""

    platforms: Mapping[str, tuple[SourceRequirement, ...]]

    def for_platform(self, platform: str | None) -> tuple[SourceRequirement, ...]:
        if platform is None and len(self.platforms) == 1:  # a plain manifest, one architecture
            return next(iter(self.platforms.values()))
        keyed = {platform_key(k): v for k, v in self.platforms.items()}
        return keyed.get(platform_key(platform), ())

    def check(self, source: BuildSource | None, where: str, platform: str | None = None) -> None:
        alternatives = self.for_platform(platform)
        if not alternatives:
            raise PolicyError(
                f"{where}: platform {platform} is not an architecture the policy (the library "
                "file) lists for this tag"
            )
        first: PolicyError | None = None
        for requirement in alternatives:
            try:
                requirement.check(source, where)
            except PolicyError as err:
                first = first or err
                continue
            return
        assert first is not None
        raise first

    def describe(self) -> str:
        return "; ".join(
            f"{platform}: " + " or ".join(r.describe() for r in alternatives)
            for platform, alternatives in self.platforms.items()
        )
