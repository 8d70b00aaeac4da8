"""BuildKit attestation manifests as evidence for ``verify --attestation TYPE`` and the
``source-repository`` / ``source-commit`` policy fields (docs/official-images.md).

An in-index attestation is accepted for a platform manifest P and a predicate type T when a chain
of digests leads from a signature that passes to a statement about P of type T:

1. *coverage*: the attestation manifest A is listed by digest in the index whose opk-sign
   signature verified (``covered-by: index-signature``), or A has an opk-sign signature referrer of
   its own that passes (``covered-by: attestation-manifest-signature``, written by
   ``opk-sign sign --attestation-manifests``, for attestation manifests added after the index was
   signed, e.g. pushed as referrers of P). Neither: refused (:class:`UncoveredAttestationError`).
2. A is pulled by its digest (checked), is an image manifest, and its ``subject``, when present,
   is P.
3. A layer of type ``application/vnd.in-toto+json`` (annotated T, a hint only) is fetched by its
   digest (checked: tampered bytes are refused) and parsed; its ``predicateType`` must be T and a
   subject must carry P's digest (an attestation for another platform is refused).

For SLSA provenance the source repository and commit (:func:`provenance_source`) are reported and,
when the policy names them, required.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from opk_sign.errors import (
    FormatError,
    OpkSignError,
    PayloadMismatchError,
    PolicyError,
    RegistryError,
    VerificationError,
)
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.manifest import ImageManifest
from opk_sign.oci.reference import Reference
from opk_sign.payloads.buildkit import (
    ATTESTATION_ARTIFACT_TYPE,
    PROVENANCE_TYPES,
    BuildSource,
    PlatformSources,
    SourceRequirement,
    attestation_layers,
    check_statement,
    parse_statement,
    provenance_source,
)
from opk_sign.verify.outcome import BundleCheck, Outcome

if TYPE_CHECKING:
    from opk_sign.verify.image import ImageSource

#: Attestation manifests tried per platform manifest and predicate type.
MAX_CANDIDATES: Final = 16
COVERED_BY_INDEX: Final = "index-signature"
COVERED_BY_OWN: Final = "attestation-manifest-signature"


class UncoveredAttestationError(VerificationError):
    """An attestation manifest no passing signature covers: not listed in the signed index and
    without a signature of its own (exit 12)."""


@dataclass(frozen=True)
class BuildKitContext:
    """What the image's index says about its attestation manifests, and how to check a
    signature of an attestation manifest of its own (the registry flow's signature check)."""

    index_digest: str | None
    #: The index's signature verified: what it lists by digest is covered.
    index_verified: bool
    #: The index's attestation-manifest entries by the digest they name.
    listed: dict[str, list[Descriptor]] = field(default_factory=dict)
    #: digest -> the signature checks of that manifest's own opk-sign signature referrers.
    own_signature: Callable[[str], list[BundleCheck]] | None = None


def candidates(
    context: BuildKitContext, platform_digest: str, referrers: Sequence[Descriptor]
) -> list[tuple[Descriptor, bool]]:
    """Attestation manifests about ``platform_digest``: those the index lists (True), then those
    only its referrers list (False), each once."""
    seen: set[str] = set()
    out: list[tuple[Descriptor, bool]] = []
    for descriptor in context.listed.get(platform_digest, []):
        if descriptor.digest not in seen:
            seen.add(descriptor.digest)
            out.append((descriptor, True))
    for descriptor in referrers:
        if descriptor.artifact_type == ATTESTATION_ARTIFACT_TYPE and descriptor.digest not in seen:
            seen.add(descriptor.digest)
            out.append((descriptor, False))
    return out


def check_buildkit_attestations(
    client: ImageSource,
    ref: Reference,
    platform_digest: str,
    predicate_type: str,
    *,
    context: BuildKitContext,
    referrers: Sequence[Descriptor],
) -> list[BundleCheck]:
    """Try the attestation manifests about ``platform_digest`` until one passes, at most
    :data:`MAX_CANDIDATES` of them; [] when there is none at all (the caller's "missing
    attestation"). Whoever can push referrers can list more than are tried: when some were left
    untried and none passed, the outcome is unknown (:class:`RegistryError`, 13), never
    "invalid" (the rule of ``verify.image._first_passing``)."""
    checks: list[BundleCheck] = []
    found = candidates(context, platform_digest, referrers)
    for tried, (descriptor, listed) in enumerate(found):
        if tried >= MAX_CANDIDATES:
            raise RegistryError(
                f"{len(found)} attestation manifests about {platform_digest}, none of the "
                f"{tried} tried holds a valid {predicate_type} statement; the rest were not "
                "tried, so the outcome is unknown",
                hint="someone may be flooding the image with referrers: list them with "
                "`opk-sign inspect` and ask the registry to remove the junk",
            )
        check = _check_one(
            client,
            ref,
            platform_digest,
            predicate_type=predicate_type,
            context=context,
            descriptor=descriptor,
            listed=listed,
        )
        if check is None:
            continue  # holds no statement of this type
        checks.append(check)
        if check.outcome is Outcome.VERIFIED:
            break
    return checks


def _check_one(
    client: ImageSource,
    ref: Reference,
    platform_digest: str,
    *,
    predicate_type: str,
    context: BuildKitContext,
    descriptor: Descriptor,
    listed: bool,
) -> BundleCheck | None:
    evidence: dict[str, Any] = {"attestationManifest": descriptor.digest}
    try:
        descriptor_read, data = client.pull_manifest(ref, descriptor.digest)
        manifest = client.parse(descriptor_read, data)
        if not isinstance(manifest, ImageManifest):
            raise FormatError(f"attestation manifest {descriptor.digest}: an index, not a manifest")
        if manifest.subject is not None and manifest.subject.digest != platform_digest:
            raise PayloadMismatchError(
                f"attestation manifest {descriptor.digest}: its subject is "
                f"{manifest.subject.digest}, not the platform manifest {platform_digest}"
            )
        layers = [
            layer
            for layer in attestation_layers(manifest)
            if layer.predicate_type in (None, predicate_type)
        ]
        if not layers:
            return None
        claims, covered_by, signature = _coverage(context, descriptor, listed)
        evidence["coveredBy"] = covered_by
        evidence["signature"] = signature
        last: OpkSignError | None = None
        for layer in layers:
            blob = client.get_blob(ref, layer.descriptor.digest, max_size=32 * 1024 * 1024)
            statement = parse_statement(blob)
            if layer.predicate_type is None and statement.predicate_type != predicate_type:
                continue
            try:
                check_statement(statement, subject=platform_digest, predicate_type=predicate_type)
            except VerificationError as err:
                last = err
                continue
            evidence["layer"] = layer.descriptor.digest
            evidence["statementType"] = statement.statement_type
            if predicate_type in PROVENANCE_TYPES:
                source = provenance_source(predicate_type, statement.predicate)
                evidence["source"] = source.to_dict() if source is not None else None
            return BundleCheck(
                descriptor.digest,
                "attestation",
                Outcome.VERIFIED,
                claims=claims,
                predicate_type=predicate_type,
                buildkit=evidence,
            )
        if last is not None:
            raise last
        return None
    except (VerificationError, FormatError) as err:
        return BundleCheck(
            descriptor.digest,
            "attestation",
            Outcome.of_error(err),
            error=err.message,
            error_type=type(err).__name__,
            predicate_type=predicate_type,
            hint=err.hint,
            buildkit=evidence,
        )


def _coverage(
    context: BuildKitContext, descriptor: Descriptor, listed: bool
) -> tuple[dict[str, Any], str, str | None]:
    """The identity of the signature that covers the attestation manifest, how, and which."""
    if listed and context.index_verified:
        return {}, COVERED_BY_INDEX, context.index_digest
    own = context.own_signature(descriptor.digest) if context.own_signature is not None else []
    for check in own:
        if check.outcome is Outcome.VERIFIED:
            return check.claims, COVERED_BY_OWN, check.referrer
    if any(c.outcome is Outcome.POLICY_MISMATCH for c in own):
        raise PolicyError(
            f"attestation manifest {descriptor.digest}: its own signature is valid but does not "
            "satisfy the policy"
        )
    where = (
        "listed in an index whose signature did not pass"
        if listed
        else "not listed in the signed index"
    )
    raise UncoveredAttestationError(
        f"attestation manifest {descriptor.digest} is {where} and has no valid signature of its "
        f"own ({len(own)} tried)",
        hint="have the image's signer sign its attestation manifests too (docs/official-images.md)",
    )


#: An image config read for its platform (docker's and OCI's carry the build history too).
MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024


def config_platform(client: ImageSource, ref: Reference, manifest: ImageManifest) -> str | None:
    """A plain manifest's platform (``os/architecture[/variant]``) as its image config names it;
    None when the config names none. The config is fetched by the digest the (signed) manifest
    names, so it is as trustworthy as the manifest: a library file's per-architecture source
    requirement is checked against it (a linux/amd64 manifest is not the arm64v8 entry)."""
    from opk_sign.jose import parse_json
    from opk_sign.oci.descriptor import Platform

    if manifest.config.size > MAX_CONFIG_BYTES:
        raise FormatError(f"image config of {manifest.config.size} bytes is too large")
    data = client.get_blob(ref, manifest.config.digest, max_size=MAX_CONFIG_BYTES)
    doc = parse_json(data, "image config", max_bytes=MAX_CONFIG_BYTES, depth=64)
    if not isinstance(doc, dict) or "architecture" not in doc or "os" not in doc:
        return None
    platform = Platform.from_dict(doc)
    text = f"{platform.os}/{platform.architecture}"
    return f"{text}/{platform.variant}" if platform.variant else text


def source_of(checks: Sequence[BundleCheck]) -> tuple[bool, BuildSource | None]:
    """Whether a verified BuildKit provenance is among ``checks``, and the source it names."""
    for check in checks:
        if (
            check.outcome is Outcome.VERIFIED
            and check.buildkit is not None
            and check.predicate_type in PROVENANCE_TYPES
        ):
            source = check.buildkit.get("source")
            if not isinstance(source, dict):
                return True, None
            return True, BuildSource(source.get("repository"), source.get("commit"), source["from"])
    return False, None


def check_source(
    client: ImageSource,
    ref: Reference,
    platform_digest: str,
    *,
    where: str,
    platform: str | None,
    requirement: SourceRequirement | PlatformSources,
    context: BuildKitContext,
    referrers: Sequence[Descriptor],
    done: Sequence[BundleCheck],
) -> tuple[list[BundleCheck], Outcome, str | None]:
    """The ``source-repository`` / ``source-commit`` policy on one platform manifest: its BuildKit
    provenance (verified as above, v1 preferred) must name them. Returns the checks added, the
    outcome, and the message when it is not verified."""
    found, source = source_of(done)
    added: list[BundleCheck] = []
    if not found:
        for predicate_type in PROVENANCE_TYPES:
            checks = check_buildkit_attestations(
                client, ref, platform_digest, predicate_type, context=context, referrers=referrers
            )
            added.extend(checks)
            found, source = source_of(checks)
            if found:
                break
    if not found:
        failing = [c for c in added if c.error]
        if failing:
            outcome = Outcome.worst(c.outcome for c in failing)
            reasons = "".join(f"\n  - {c.referrer}: {c.error}" for c in failing)
            return added, outcome, f"{where}: no valid BuildKit provenance{reasons}"
        return (
            added,
            Outcome.MISSING_ATTESTATION,
            f"{where}: signed, but no BuildKit SLSA provenance to check "
            f"{requirement.describe()} against",
        )
    try:
        requirement.check(source, where, platform)
    except PolicyError as err:
        return added, Outcome.POLICY_MISMATCH, err.message
    return added, Outcome.VERIFIED, None
