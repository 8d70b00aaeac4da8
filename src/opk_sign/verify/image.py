"""Verifying images in registries: resolve, list referrers, verify bundles, decide the outcome.

The outcome of an image is one of a small, stable set (docs/verify.md), each with its exit code:
verified (0), no signatures (10), valid signatures none of which satisfies the policy (11), or
a valid signature without a required attestation (11, missing-attestation), no valid signature
(12), registry or network failure (13: the outcome is unknown, never "unsigned"), trust material
failure (14), no such image (15). An image that is an index is verified when the index and every
platform manifest (or the one ``--platform`` names) are.

Requests for a single-platform image, signed once, on a registry with the referrers API: the
manifest (1), its referrers (1), the signature's artifact manifest (1) and bundle (1).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Final, Protocol

from opk_sign import deadline
from opk_sign.bundle import (
    ANNOTATION_ISSUER,
    ANNOTATION_PREDICATE_TYPE,
    ANNOTATION_REPOSITORY,
    ATTESTATION_ARTIFACT_TYPE,
    BUNDLE_MEDIA_TYPE,
    SIGNATURE_ARTIFACT_TYPE,
    Bundle,
)
from opk_sign.errors import (
    FormatError,
    ImageNotFoundError,
    NotFoundError,
    OpkSignError,
    PayloadMismatchError,
    PolicyError,
    RegistryError,
    UsageError,
    VerificationError,
)
from opk_sign.oci import limits, mediatypes
from opk_sign.oci.client import RefLike, RegistryClient
from opk_sign.oci.descriptor import Descriptor, Platform
from opk_sign.oci.manifest import ImageIndex, ImageManifest, Manifest, parse_manifest
from opk_sign.oci.reference import Reference, image_key
from opk_sign.pktoken.verify import VerifiedPKToken
from opk_sign.policy import AllOf, AnyOf, ClaimPolicy, IdentityPolicy
from opk_sign.verify.bundle import verify_attestation_bundle, verify_signature_bundle
from opk_sign.verify.options import OptionsFor, VerifyOptions, options_for
from opk_sign.verify.outcome import (
    BundleCheck,
    ImageResult,
    ManifestResult,
    Outcome,
    identity_of,
)

# BuildKit's attestations and per-platform source requirements are checked by modules imported
# when an image or a policy has them: a one-shot verification of a plain image never loads them.
if TYPE_CHECKING:
    from opk_sign.verify.attestations import BuildKitContext

#: Bundles tried per manifest, and the time they may take together. Whoever can push referrers
#: can add bundles, so neither bound may be spendable by listing order: distinct bundles whose
#: unsigned hints do not contradict the policy are tried first, and the bound is generous.
MAX_BUNDLES_PER_MANIFEST: Final = 256
BUNDLES_BUDGET_SECONDS: Final = 30.0
#: What a hint must look like to be read at all (GitHub: owner 39, repository 100 characters).
_HINTED_REPOSITORY: Final = re.compile(r"[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}")
_HINTED_ISSUER: Final = re.compile(r"https?://[A-Za-z0-9._:/-]{1,200}")
#: Images verified at once in a batch; the registry client's connection pool is shared.
DEFAULT_JOBS: Final = 16


def _trust_kwargs(options: VerifyOptions) -> dict[str, Any]:
    """The keyword arguments every bundle verification takes from the options."""
    kwargs: dict[str, Any] = {
        "keys": options.keys,
        "policy": options.policy,
        "issuers": options.issuers,
        "expiry": options.expiry,
        "now": options.now,
        "pktoken_cache": options.pktoken_cache,
    }
    if options.tsa is not None:
        kwargs["tsa"] = options.tsa
    return kwargs


class ImageSource(Protocol):
    """Where an image's manifests, referrers and bundles are read: a registry
    (:class:`~opk_sign.oci.client.RegistryClient`) or an offline kit
    (:class:`opk_sign.verify.kit.KitSource`). Verification is the same over either."""

    def pull_manifest(self, ref: RefLike, digest: str | None = None) -> tuple[Descriptor, bytes]:
        """The manifest's descriptor and bytes, checked against the digest asked for."""
        ...

    def parse(self, descriptor: Descriptor, data: bytes) -> Manifest:
        """The manifest ``data`` parsed as ``descriptor`` says."""
        ...

    def list_referrers(
        self, repo: RefLike, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """The referrers of ``digest``."""
        ...

    def get_blob(self, repo: RefLike, digest: str, max_size: int = ...) -> bytes:
        """A blob's bytes, checked against ``digest``."""
        ...


# --- one image ----------------------------------------------------------------------------------


def verify_image(
    client: ImageSource, image: str, options: VerifyOptions | OptionsFor
) -> ImageResult:
    """Verify one image; every failure becomes an outcome, never an exception."""
    started = time.monotonic()
    reference: Reference | None = None
    digest: str | None = None
    try:
        reference = Reference.parse(image)
        options = options_for(options, image)
        try:
            descriptor, data = client.pull_manifest(reference)
        except NotFoundError as err:
            raise ImageNotFoundError(
                f"{reference}: no such image ({err.message})",
                hint="check the name and the tag or digest (`opk-sign inspect IMAGE`)",
            ) from None
        digest = descriptor.digest
        manifests = _verify_tree(client, reference, descriptor, data, options)
    except OpkSignError as err:
        return _error_result(image, err, reference, digest, started)
    outcome = Outcome.worst(m.outcome for m in manifests)
    failed = [m for m in manifests if m.outcome is not Outcome.VERIFIED]
    if not failed:
        message = f"verified: {len(manifests)} manifests" if len(manifests) > 1 else "verified"
    else:
        deciding = next(m for m in failed if m.outcome is outcome)
        message = deciding.message
    return ImageResult(
        image=image,
        outcome=outcome,
        message=message,
        reference=reference.name,
        digest=digest,
        manifests=tuple(manifests),
        seconds=time.monotonic() - started,
    )


def _error_result(
    image: str, err: OpkSignError, reference: Reference | None, digest: str | None, started: float
) -> ImageResult:
    return ImageResult(
        image=image,
        outcome=Outcome.of_error(err),
        message=err.diagnostics(),
        reference=reference.name if reference else None,
        digest=digest,
        seconds=time.monotonic() - started,
    )


def _prepare(image: str, options: VerifyOptions | OptionsFor) -> VerifyOptions | ImageResult:
    """What :func:`verify_image` decides before asking a registry: the options for ``image``, or
    its result when it has none (a bad reference, no policy for it). Run where the batch is
    handed out; the caller's deadlines apply."""
    started = time.monotonic()
    reference: Reference | None = None
    try:
        reference = Reference.parse(image)
        return options_for(options, image)
    except OpkSignError as err:
        return _error_result(image, err, reference, None, started)


def _verify_tree(
    client: ImageSource,
    ref: Reference,
    descriptor: Descriptor,
    data: bytes,
    options: VerifyOptions,
) -> list[ManifestResult]:
    manifest = client.parse(descriptor, data)
    if isinstance(manifest, ImageManifest):
        alone = _buildkit_context(client, ref, options, index=None, index_verified=False)
        # Per-platform source requirements (a library file's architectures): a plain manifest's
        # platform is its config's, checked like an index entry's (docs/official-images.md).
        own = None
        if options.source is not None:
            from opk_sign.payloads.buildkit import PlatformSources
            from opk_sign.verify.attestations import config_platform

            if isinstance(options.source, PlatformSources):
                own = config_platform(client, ref, manifest)
        return [
            _verify_manifest(client, ref, descriptor, own, options, attest=True, buildkit=alone)
        ]
    children = [c for c in manifest.manifests if c.media_type in mediatypes.MANIFEST_MEDIA_TYPES]
    # Build attestation manifests (buildkit's "unknown/unknown") are not platforms to run.
    platforms = [c for c in children if c.platform is None or c.platform.os != "unknown"]
    if options.platform is not None:
        platforms = [c for c in platforms if _platform_matches(c.platform, options.platform)]
        if not platforms:
            available = ", ".join(_platform_text(c.platform) or c.digest for c in children)
            raise UsageError(
                f"{ref} has no {_platform_text(options.platform)} manifest (it has: {available})"
            )
    results = [_verify_manifest(client, ref, descriptor, None, options, attest=False)]
    # BuildKit's in-index attestation manifests: covered by the index's signature when it passed.
    context = _buildkit_context(
        client,
        ref,
        options,
        index=(descriptor, manifest),
        index_verified=results[0].outcome is Outcome.VERIFIED,
    )
    for child in platforms:
        results.append(
            _verify_manifest(
                client,
                ref,
                child,
                _platform_text(child.platform),
                options,
                attest=True,
                buildkit=context,
            )
        )
    return results


def _buildkit_context(
    client: ImageSource,
    ref: Reference,
    options: VerifyOptions,
    *,
    index: tuple[Descriptor, ImageIndex] | None,
    index_verified: bool,
) -> BuildKitContext | None:
    """What BuildKit's attestations and source requirements need (``index``: the index being
    verified, if any, whose attestation manifests it lists), or None when the verification asks
    for neither (so a plain verification never loads their checks)."""
    if not options.attestations and options.source is None:
        return None
    from opk_sign.payloads.buildkit import attestations_in_index
    from opk_sign.verify.attestations import BuildKitContext

    index_digest = index[0].digest if index is not None else None
    listed = attestations_in_index(index[1]) if index is not None else {}

    def own_signature(digest: str) -> list[BundleCheck]:
        referrers = client.list_referrers(ref, digest)
        signatures = [d for d in referrers if d.artifact_type == SIGNATURE_ARTIFACT_TYPE]
        return _first_passing(
            signatures,
            lambda d: _check_signature(client, ref, digest, d, options),
            options.policy,
        )

    return BuildKitContext(index_digest, index_verified, listed, own_signature)


def _platform_matches(have: Platform | None, want: Platform) -> bool:
    if have is None:
        return False
    return (
        have.os == want.os
        and have.architecture == want.architecture
        and (not want.variant or have.variant == want.variant)
    )


def _platform_text(platform: Platform | None) -> str | None:
    if platform is None:
        return None
    text = f"{platform.os}/{platform.architecture}"
    return f"{text}/{platform.variant}" if platform.variant else text


def _verify_manifest(
    client: ImageSource,
    ref: Reference,
    descriptor: Descriptor,
    platform: str | None,
    options: VerifyOptions,
    *,
    attest: bool,
    buildkit: BuildKitContext | None = None,
) -> ManifestResult:
    digest = descriptor.digest
    referrers = client.list_referrers(ref, digest)
    signatures = [d for d in referrers if d.artifact_type == SIGNATURE_ARTIFACT_TYPE]
    checks: list[BundleCheck] = []
    if not signatures:
        return ManifestResult(
            digest,
            descriptor.media_type,
            platform,
            Outcome.NO_SIGNATURES,
            f"{_where(digest, platform)}: no opk-sign signatures"
            + (f" ({len(referrers)} other referrers)" if referrers else ""),
        )
    sig_check = _first_passing(
        signatures,
        lambda d: _check_signature(client, ref, digest, d, options),
        options.policy,
    )
    checks.extend(sig_check)
    outcome = _decide(sig_check)
    message = _message(digest, platform, "signature", sig_check, outcome)
    if outcome is Outcome.VERIFIED and attest:
        attestations = [d for d in referrers if d.artifact_type == ATTESTATION_ARTIFACT_TYPE]
        for predicate_type in options.attestations:
            # The annotation is an unsigned hint: it lets us skip attestations of other types
            # (a lying hint can only hide an attestation, which fails closed); the signed
            # statement decides.
            candidates = [
                d
                for d in attestations
                if d.annotations.get(ANNOTATION_PREDICATE_TYPE, predicate_type) == predicate_type
            ]
            att_check, what = _attestation_checks(
                client,
                ref,
                digest,
                predicate_type=predicate_type,
                options=options,
                candidates=candidates,
                buildkit=buildkit,
                referrers=referrers,
            )
            checks.extend(att_check)
            if not att_check:
                outcome = Outcome.MISSING_ATTESTATION
                message = (
                    f"{_where(digest, platform)}: signed, but no attestation of type "
                    f"{predicate_type} (required by --attestation)"
                )
                break
            att_outcome = _decide(att_check)
            if att_outcome is not Outcome.VERIFIED:
                outcome = att_outcome
                message = _message(digest, platform, what, att_check, outcome)
                break
    if outcome is Outcome.VERIFIED and attest and options.source is not None and buildkit:
        from opk_sign.verify.attestations import check_source

        added, outcome, failed = check_source(
            client,
            ref,
            digest,
            where=_where(digest, platform),
            platform=platform,
            requirement=options.source,
            context=buildkit,
            referrers=referrers,
            done=checks,
        )
        checks.extend(added)
        message = failed or message
    return ManifestResult(digest, descriptor.media_type, platform, outcome, message, tuple(checks))


def _attestation_checks(
    client: ImageSource,
    ref: Reference,
    digest: str,
    *,
    predicate_type: str,
    options: VerifyOptions,
    candidates: list[Descriptor],
    buildkit: BuildKitContext | None,
    referrers: list[Descriptor],
) -> tuple[list[BundleCheck], str]:
    """The checks of both kinds of attestation of ``predicate_type`` on one manifest, and what
    was tried (for the message): opk-sign attestation referrers, then, unless one passed,
    BuildKit's attestation manifests (through a signature). A passing one of either kind
    satisfies the requirement: junk pushed next to a valid attestation cannot make it fail.
    Untried candidates of one kind (a flood, 13) stand only when the other kind has no passing
    one either."""
    checks: list[BundleCheck] = []
    pending: RegistryError | None = None
    if candidates:
        try:
            checks = _first_passing(
                candidates,
                partial(
                    _check_attestation,
                    client,
                    ref,
                    digest,
                    options=options,
                    predicate_type=predicate_type,
                ),
                options.policy,
            )
        except RegistryError as err:
            pending = err
    kinds = ["attestation"] if candidates else []
    if buildkit is not None and _decide(checks) is not Outcome.VERIFIED:
        from opk_sign.verify.attestations import check_buildkit_attestations

        bk_checks: list[BundleCheck] = []
        try:
            bk_checks = check_buildkit_attestations(
                client, ref, digest, predicate_type, context=buildkit, referrers=referrers
            )
        except RegistryError:
            if pending is None:
                raise
        if bk_checks:
            kinds.append("BuildKit attestation")
        checks.extend(bk_checks)
    if pending is not None and _decide(checks) is not Outcome.VERIFIED:
        raise pending
    return checks, f"{' or '.join(kinds) or 'attestation'} of type {predicate_type}"


def _where(digest: str, platform: str | None) -> str:
    return f"{digest} ({platform})" if platform else digest


def _first_passing(
    candidates: list[Descriptor],
    check: Callable[[Descriptor], BundleCheck],
    policy: IdentityPolicy,
) -> list[BundleCheck]:
    """Try bundles until one passes, plausible ones first (:func:`plausible_first`), within
    :data:`MAX_BUNDLES_PER_MANIFEST` and :data:`BUNDLES_BUDGET_SECONDS`; registry and trust
    errors end the image (13/14)."""
    done: list[BundleCheck] = []
    started = time.monotonic()
    ordered = plausible_first(candidates, policy)
    for descriptor in ordered:
        if len(done) >= MAX_BUNDLES_PER_MANIFEST or (
            done and time.monotonic() - started > BUNDLES_BUDGET_SECONDS
        ):
            # Whoever can push referrers can list more than we try: what was left untried may
            # hold the valid signature, so the outcome is unknown (13), never "invalid".
            raise RegistryError(
                f"{len(ordered)} distinct referrers, none of the {len(done)} tried in "
                f"{time.monotonic() - started:.0f} s passed; the rest were not tried, so the "
                "outcome is unknown",
                hint="someone may be flooding the image with referrers: list them with "
                "`opk-sign inspect` and ask the registry to remove the junk",
            )
        result = check(descriptor)
        done.append(result)
        if result.outcome is Outcome.VERIFIED:
            break
    return done


def plausible_first(candidates: list[Descriptor], policy: IdentityPolicy) -> list[Descriptor]:
    """Each referrer once, those whose unsigned hints (artifact annotations) do not contradict
    the policy first, in listing order. Hints decide only the order: every bundle tried is
    verified in full, so a lying hint can delay a bundle, never make one pass."""
    seen: set[str] = set()
    plausible: list[Descriptor] = []
    others: list[Descriptor] = []
    for descriptor in candidates:
        if descriptor.digest in seen:
            continue
        seen.add(descriptor.digest)
        refuted = _refutes(policy, _hinted_claims(descriptor.annotations))
        (others if refuted else plausible).append(descriptor)
    return plausible + others


def _hinted_claims(annotations: Mapping[str, str]) -> dict[str, str]:
    """The repository and issuer the unsigned hints claim, only when shaped like them: a hint is
    attacker-written text that the policy's regexes run on, so it is short and plain or ignored.
    (The identity hint is not used: it is a workflow ref or a subject, and cannot say which.)"""
    claims: dict[str, str] = {}
    repository = annotations.get(ANNOTATION_REPOSITORY)
    if isinstance(repository, str) and _HINTED_REPOSITORY.fullmatch(repository):
        claims["repository"] = repository
        claims["repository_owner"] = repository.split("/", 1)[0]
    issuer = annotations.get(ANNOTATION_ISSUER)
    if isinstance(issuer, str) and _HINTED_ISSUER.fullmatch(issuer):
        claims["iss"] = issuer
    return claims


def _refutes(policy: IdentityPolicy, hints: Mapping[str, str]) -> bool:
    """Whether the hinted claims certainly fail the policy (claims not hinted never do)."""
    if isinstance(policy, ClaimPolicy):
        # Only equality: a policy's regex never runs on attacker-written text (backtracking).
        if policy.regex or policy.claim not in hints:
            return False
        try:
            policy.verify(hints)
        except PolicyError:
            return True
        return False
    if isinstance(policy, AllOf):
        return any(_refutes(p, hints) for p in policy.policies)
    if isinstance(policy, AnyOf):
        return all(_refutes(p, hints) for p in policy.policies)
    return False


def _decide(checks: list[BundleCheck]) -> Outcome:
    if any(c.outcome is Outcome.VERIFIED for c in checks):
        return Outcome.VERIFIED
    # The policy runs last, so a policy failure means a bundle that was valid in every other
    # respect: "signed, but not by whom you require" (11) outranks "not valid" (12).
    if any(c.outcome is Outcome.POLICY_MISMATCH for c in checks):
        return Outcome.POLICY_MISMATCH
    return Outcome.INVALID


def _message(
    digest: str, platform: str | None, what: str, checks: list[BundleCheck], outcome: Outcome
) -> str:
    where = _where(digest, platform)
    if outcome is Outcome.VERIFIED:
        return f"{where}: {what} verified"
    if outcome is Outcome.POLICY_MISMATCH:
        head = (
            f"{where}: no {what} satisfies the policy"
            f" ({sum(c.outcome is Outcome.POLICY_MISMATCH for c in checks)} valid, "
            f"{len(checks)} tried)"
        )
    else:
        head = f"{where}: no valid {what} ({len(checks)} tried)"
    reasons = "".join(
        f"\n  - {c.referrer}: {c.error}" + (f"\n    hint: {c.hint}" if c.hint else "")
        for c in checks
        if c.error
    )
    return head + reasons


def _fetch_bundle(
    client: ImageSource, ref: Reference, subject: str, referrer: Descriptor, artifact_type: str
) -> Bundle:
    """The bundle a referrer holds; the artifact manifest's shape is checked before the blob."""
    descriptor, data = client.pull_manifest(ref, referrer.digest)
    try:
        manifest = parse_manifest(data, descriptor.media_type)
    except FormatError as err:
        raise FormatError(f"referrer manifest: {err.message}") from None
    if not isinstance(manifest, ImageManifest):
        raise FormatError("referrer manifest: an index, not an artifact manifest")
    if manifest.artifact_type != artifact_type:
        raise FormatError(
            f"referrer manifest: artifactType {manifest.artifact_type!r}, not {artifact_type!r}"
        )
    if manifest.subject is None or manifest.subject.digest != subject:
        named = manifest.subject.digest if manifest.subject else None
        raise PayloadMismatchError(f"referrer manifest: subject is {named}, not {subject}")
    if len(manifest.layers) != 1 or manifest.layers[0].media_type != BUNDLE_MEDIA_TYPE:
        raise FormatError(
            f"referrer manifest: expected one layer of type {BUNDLE_MEDIA_TYPE},"
            f" got {[layer.media_type for layer in manifest.layers]}"
        )
    layer = manifest.layers[0]
    if layer.size > limits.MAX_BUNDLE_BYTES:
        raise FormatError(f"referrer manifest: bundle of {layer.size} bytes is too large")
    return Bundle.from_json(client.get_blob(ref, layer.digest))


@dataclass(frozen=True)
class Decided:
    """A bundle that passed :func:`decide_bundle`: its signer, and the transparency log entries
    verified with it (none when no log key was trusted or the bundle has none)."""

    pk_token: VerifiedPKToken
    log_entries: tuple[dict[str, Any], ...] = ()

    def check(self, referrer: str, kind: str, predicate_type: str | None = None) -> BundleCheck:
        return BundleCheck(
            referrer,
            kind,
            Outcome.VERIFIED,
            claims=identity_of(self.pk_token),
            predicate_type=predicate_type,
            transparency_log=self.log_entries,
        )


def decide_bundle(
    bundle: Bundle,
    *,
    digest: str,
    repository: str,
    predicate_type: str | None,
    options: VerifyOptions,
) -> Decided:
    """The one decision on a bundle, whatever its source (a registry or a file): bound to this
    manifest ``digest`` and, for a signature, this ``repository``; a signature where one is
    required (``predicate_type`` None), else an attestation of exactly ``predicate_type``."""
    # A bundle of the other kind is refused by the verifier itself ("bundle: not a signature
    # (it holds a DSSE envelope ...)"): a kind never stands in for the other.
    logged: tuple[dict[str, Any], ...] = ()
    if options.tlog is not None or options.require_tlog:
        # Transparency first (offline: the entry's own proof and checkpoint), so that a stripped
        # entry is "invalid" (12) whoever signed; docs/transparency.md.
        from opk_sign.tlog.verify import verify_tlog

        entries = verify_tlog(bundle, options.tlog, required=options.require_tlog, digest=digest)
        logged = tuple(entry.to_dict() for entry in entries)
    if predicate_type is None:
        signed = verify_signature_bundle(
            bundle,
            digest=digest,
            docker_reference=repository,
            signed_repositories=options.signed_repositories,
            **_trust_kwargs(options),
        ).pk_token
        return Decided(signed, logged)
    attested = verify_attestation_bundle(
        bundle, digest=digest, predicate_type=predicate_type, **_trust_kwargs(options)
    ).pk_token
    return Decided(attested, logged)


def _check_signature(
    client: ImageSource,
    ref: Reference,
    digest: str,
    referrer: Descriptor,
    options: VerifyOptions,
) -> BundleCheck:
    try:
        bundle = _fetch_bundle(client, ref, digest, referrer, SIGNATURE_ARTIFACT_TYPE)
        verified = decide_bundle(
            bundle,
            digest=digest,
            repository=options.signed_name or ref.name,
            predicate_type=None,
            options=options,
        )
    except (VerificationError, FormatError) as err:
        return _failed(referrer, "signature", err)
    return verified.check(referrer.digest, "signature")


def _check_attestation(
    client: ImageSource,
    ref: Reference,
    digest: str,
    referrer: Descriptor,
    *,
    predicate_type: str,
    options: VerifyOptions,
) -> BundleCheck:
    try:
        bundle = _fetch_bundle(client, ref, digest, referrer, ATTESTATION_ARTIFACT_TYPE)
        verified = decide_bundle(
            bundle,
            digest=digest,
            repository=options.signed_name or ref.name,
            predicate_type=predicate_type,
            options=options,
        )
    except (VerificationError, FormatError) as err:
        return _failed(referrer, "attestation", err, predicate_type)
    return verified.check(referrer.digest, "attestation", predicate_type)


def _failed(
    referrer: Descriptor, kind: str, err: OpkSignError, predicate_type: str | None = None
) -> BundleCheck:
    return BundleCheck(
        referrer.digest,
        kind,
        Outcome.of_error(err),
        error=err.message,
        error_type=type(err).__name__,
        predicate_type=predicate_type,
        hint=err.hint,
    )


# --- many images --------------------------------------------------------------------------------


def verify_images(
    images: Iterable[str],
    options: VerifyOptions | OptionsFor,
    *,
    client: RegistryClient | None = None,
    jobs: int = DEFAULT_JOBS,
    image_timeout: float | None = None,
    workers: int | None = None,
) -> Iterator[ImageResult]:
    """Verify images in parallel (at most ``jobs`` at once); results come in the given order.

    Every failure is an image's outcome, never an exception. Without a ``client``, one with the
    default keychain (the docker config, then anonymous) is made for the run and closed after it.
    Each image has its own deadline (``image_timeout``, default twice the exchange deadline)
    inside the caller's (the run's), so one slow registry cannot hold the others' results.

    ``workers``: processes to verify on, this one included (:mod:`opk_sign.verify.workers`),
    each with its share of the ``jobs`` as threads; a worker process makes a client like
    ``client``. 0 or 1: this process's threads alone; None (default): one per CPU for batches
    of :data:`~opk_sign.verify.workers.MIN_IMAGES` distinct images or more. A client a worker
    could not make again (a subclass, credential sources that do not pickle) keeps the batch
    in this process.
    """
    images = list(images)
    if client is None:
        from opk_sign.oci.keychain import Keychain

        with RegistryClient(Keychain.default()) as own:
            yield from verify_images(
                images,
                options,
                client=own,
                jobs=jobs,
                image_timeout=image_timeout,
                workers=workers,
            )
        return
    run = deadline.current()  # pool threads do not inherit it: each image enters it itself
    # The same image named twice (or spelled two ways) is verified once, reported for each line.
    keys = [image_key(image) for image in images]
    distinct = list(dict.fromkeys(keys))
    if len(distinct) < len(images):
        first: dict[str, str] = {}
        for image, key in zip(images, keys, strict=True):
            first.setdefault(key, image)
        decided: dict[str, ImageResult] = {}
        results = verify_images(
            [first[key] for key in distinct],
            options,
            client=client,
            jobs=jobs,
            image_timeout=image_timeout,
            workers=workers,
        )
        for image, key in zip(images, keys, strict=True):
            if key not in decided:
                decided[key] = next(results)
            yield replace(decided[key], image=image)
        return
    per_image = image_timeout or 2 * (client.http.exchange_timeout or 60.0)
    settings = None
    if len(images) > 1 and jobs > 1 and workers not in (0, 1):
        from opk_sign.verify import workers as _workers  # only for a batch

        processes = _workers.worker_count(workers, jobs=jobs, images=len(images))
        if processes:
            settings = _workers.ClientSettings.of(client, _workers.registries_of(images))
    if settings is not None:
        from opk_sign.verify.workers import verify_in_workers

        def prepare(image: str) -> VerifyOptions | ImageResult:
            with deadline.within(run), deadline.within(per_image, f"verifying {image}"):
                return _prepare(image, options)

        yield from verify_in_workers(
            images,
            prepare,
            verify=verify_image,
            settings=settings,
            client=client,
            workers=processes,
            jobs=jobs,
            per_image=per_image,
            run=run,
            notice=client.transport.notice,
        )
        return

    def one(image: str) -> ImageResult:
        with deadline.within(run), deadline.within(per_image, f"verifying {image}"):
            return verify_image(client, image, options)

    if jobs <= 1 or len(images) <= 1:
        for image in images:
            yield one(image)
        return
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=min(jobs, len(images)))
    try:
        yield from pool.map(one, images)
    finally:  # also when the caller stops early (an interrupt): queued images never start
        pool.shutdown(wait=True, cancel_futures=True)


def verify_bundle_offline(
    bundles: Bundle | Sequence[Bundle], image: str, options: VerifyOptions
) -> ImageResult:
    """Bundle files against ``name@digest`` with no registry: only the trust material is used.

    Exactly the registry path's rules (:func:`decide_bundle`): a signature bound to this digest
    and repository is required, and each required attestation type needs its own attestation
    bundle; a bundle of the wrong kind never stands in for another.
    """
    started = time.monotonic()
    given = [bundles] if isinstance(bundles, Bundle) else list(bundles)
    try:
        ref = Reference.parse(image, default_tag=None)
        if ref.digest is None:
            raise UsageError(
                f"--bundle needs the image by digest, not {image!r}",
                hint="give NAME@sha256:..., the digest the bundle was made for",
            )
        refuse_unbundled_requirements(options)
    except OpkSignError as err:
        return ImageResult(image, Outcome.of_error(err), err.diagnostics())
    digest = ref.digest
    fake = Descriptor(BUNDLE_MEDIA_TYPE, digest, 0)

    def check(kind: str, wanted: str | None, bundle: Bundle) -> BundleCheck:
        def run() -> Decided:
            return decide_bundle(
                bundle,
                digest=digest,
                repository=options.signed_name or ref.name,
                predicate_type=wanted,
                options=options,
            )

        return replace(_verify_loaded(fake, kind, wanted, run), referrer="-")

    sig_checks = [check("signature", None, b) for b in given if b.is_signature]
    if not sig_checks:  # nothing else may stand in: try what was given as a signature, and fail
        sig_checks = [check("signature", None, b) for b in given]
    checks = list(sig_checks)
    outcome = _decide(sig_checks)
    what = "signature"
    if outcome is Outcome.VERIFIED:
        for predicate_type in options.attestations:
            att_checks = [
                check("attestation", predicate_type, b) for b in given if not b.is_signature
            ]
            checks.extend(att_checks)
            if not att_checks:
                outcome = Outcome.MISSING_ATTESTATION
                what = f"attestation of type {predicate_type}"
                break
            att_outcome = _decide(att_checks)
            if att_outcome is not Outcome.VERIFIED:
                outcome, what = att_outcome, f"attestation of type {predicate_type}"
                break
    failing = [c for c in checks if c.kind == what.split()[0] and c.error]
    if outcome is Outcome.VERIFIED:
        message = "signature verified" + (
            f", {len(options.attestations)} attestation type(s) verified"
            if options.attestations
            else ""
        )
    elif outcome in (Outcome.NO_SIGNATURES, Outcome.MISSING_ATTESTATION):
        message = f"no {what} among the bundles given"
    else:
        message = f"{what}: " + "; ".join(str(c.error) for c in failing[:3])
    manifest = ManifestResult(digest, "", None, outcome, message, tuple(checks))
    return ImageResult(
        image, outcome, message, ref.name, digest, (manifest,), time.monotonic() - started
    )


def refuse_unbundled_requirements(options: VerifyOptions) -> None:
    """A requirement bundle files cannot show is refused, never skipped: the source repository
    and commit (flags or a policy's ``source-*``) need the image's BuildKit provenance, which
    only the registry or an offline kit holds (docs/official-images.md)."""
    if options.source is not None:
        raise UsageError(
            f"--bundle cannot check {options.source.describe()}: that needs the image's BuildKit "
            "provenance, which no bundle file carries",
            hint="verify from the registry, or from an offline kit (--from-dir), to check the "
            "source repository/commit; or drop the source requirement",
        )


def _verify_loaded(
    referrer: Descriptor,
    kind: str,
    predicate_type: str | None,
    run: Callable[[], Decided],
) -> BundleCheck:
    try:
        verified = run()
    except (VerificationError, FormatError) as err:
        return _failed(referrer, kind, err, predicate_type)
    return verified.check(referrer.digest, kind, predicate_type)
