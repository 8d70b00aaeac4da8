"""The signing flow: from an image reference to signature and attestation referrers.

Steps (docs/bundle.md for what is written, docs/registry.md for where):

1. Make an ephemeral ES256 key (memory only) and its CIC; the commitment is the ID token audience.
2. Get the ID token from the provider; verify it against the issuer's live JWKS (discovery).
3. Replace the OP's RSA signature by a GQ256 proof and build the PK token; check it as a verifier
   would before using it.
4. Resolve the reference to a digest and collect the manifests to sign: the one named and, with
   ``recursive``, every platform manifest of an index.
5. Per platform manifest: attestations (SLSA provenance unless disabled, a custom predicate on
   request), then the signature. The index's signature comes last, once the referrers of every
   platform manifest are stored and written to their listing. With a timestamp authority, each
   bundle gets an RFC 3161 timestamp over its signature; a manifest's bundles are all made and
   timestamped before any of them is pushed. Each bundle is pushed as an OCI 1.1 referrer of the
   manifest it signs. On a registry without the referrers API, a manifest's referrers are listed
   by one write of its fallback index, which is then confirmed after a settle time
   (docs/registry.md); the platform manifests' confirmations run while the index is signed, so
   the run waits about one settle time, not two, and succeeds only once every listing is
   confirmed.

A manifest counts as signed once its signature referrer is stored; it is pushed after the
manifest's attestations, so a failure never leaves a signed manifest without them. A failure
raises :class:`SigningError` naming the manifests signed and those not. The ID token and the
request token are never logged, printed or kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import requests

from opk_sign.bundle import BUNDLE_MEDIA_TYPE, Bundle
from opk_sign.errors import (
    EXIT_FAILURE,
    FormatError,
    ImageNotFoundError,
    NotFoundError,
    OpkSignError,
    SigningError,
    TrustError,
    UsageError,
)
from opk_sign.http import new_session
from opk_sign.identity import SignerIdentity
from opk_sign.jose import CompactJWS, JSONObject, parse_json_object
from opk_sign.names import TLOG_MODES
from opk_sign.oci import mediatypes
from opk_sign.oci.client import PendingReferrers, RegistryClient
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.manifest import ImageIndex
from opk_sign.oci.reference import Reference
from opk_sign.oidc import JWKSCache, TokenProvider, verify_id_token
from opk_sign.payloads.buildkit import ATTESTATION_ARTIFACT_TYPE as BUILDKIT_ATTESTATION
from opk_sign.payloads.buildkit import attestation_target, is_attestation_descriptor
from opk_sign.pktoken import (
    PKToken,
    StaticJWKS,
    UserKey,
    commitment,
    gq,
    new_cic_header,
    verify_pktoken,
)
from opk_sign.pktoken.verify import select_key
from opk_sign.sign.signer import Signer
from opk_sign.tlog.modes import DEFAULT_TLOG_URL, should_log
from opk_sign.trust.tsa import request_timestamp
from opk_sign.urls import require_secure_url

log = logging.getLogger(__name__)

#: Manifests signed at once; each holds a connection or two.
MAX_PARALLEL_MANIFESTS: Final = 4
#: Largest custom predicate accepted; the bundle holding it (base64 in DSSE) must stay under 1 MiB.
MAX_PREDICATE_BYTES: Final = 512 * 1024
#: docker buildx marks its own attestation manifests in an index with this annotation.
_DOCKER_REFERENCE_TYPE: Final = "vnd.docker.reference.type"


@dataclass(frozen=True)
class CustomPredicate:
    """A predicate the user attaches as an extra attestation (an SBOM, a scan result)."""

    predicate_type: str
    predicate: JSONObject

    def __post_init__(self) -> None:
        scheme, colon, rest = self.predicate_type.partition(":")
        if not colon or not scheme.isascii() or not scheme.isalpha() or not rest:
            raise UsageError(
                f"the predicate type must be an absolute URI, got {self.predicate_type!r}",
                hint="e.g. https://spdx.dev/Document or https://cyclonedx.org/bom",
            )
        if not isinstance(self.predicate, dict):
            raise UsageError("the predicate must be a JSON object")

    @classmethod
    def from_file(cls, path: Path, predicate_type: str | None) -> CustomPredicate:
        """A predicate from a JSON file (at most MAX_PREDICATE_BYTES)."""
        if not predicate_type:
            raise UsageError(
                "a predicate file needs its predicate type", hint="e.g. https://spdx.dev/Document"
            )
        try:
            size = path.stat().st_size
            if size > MAX_PREDICATE_BYTES:
                raise UsageError(
                    f"predicate file {path} is {size} bytes, over the "
                    f"{MAX_PREDICATE_BYTES}-byte limit"
                )
            data = path.read_bytes()
        except OSError as err:
            raise UsageError(f"cannot read predicate file {path}: {err.strerror}") from None
        try:
            predicate = parse_json_object(data, f"predicate file {path}")
        except FormatError as err:
            raise UsageError(err.message) from None
        return cls(predicate_type, predicate)


@dataclass(frozen=True)
class SigningOptions:
    #: Sign every platform manifest of an index too (the index alone otherwise).
    recursive: bool = True
    #: Attach a SLSA provenance v1 attestation to every platform manifest.
    provenance: bool = True
    predicate: CustomPredicate | None = None
    #: The GitHub server, for the URLs in provenance (GITHUB_SERVER_URL).
    server_url: str = "https://github.com"
    #: An RFC 3161 timestamp authority to timestamp every bundle's signature (None: none).
    timestamp_url: str | None = None
    #: Also sign BuildKit's attestation manifests (in the index, and those pushed as referrers of
    #: a platform manifest): a signature of their own (docs/official-images.md).
    attestation_manifests: bool = False
    #: Log every bundle in a Rekor v2 transparency log: "always", "never", or "auto" (only when
    #: the ID token says the repository is public; docs/transparency.md).
    tlog: str = "never"
    tlog_url: str = DEFAULT_TLOG_URL

    def __post_init__(self) -> None:
        if self.timestamp_url is not None:
            require_secure_url(self.timestamp_url, "the timestamp authority URL")
        if self.tlog not in TLOG_MODES:
            raise UsageError(f"--tlog must be one of {', '.join(TLOG_MODES)}, not {self.tlog!r}")
        if self.tlog != "never":
            require_secure_url(self.tlog_url, "the transparency log URL")


@dataclass(frozen=True)
class ManifestToSign:
    descriptor: Descriptor
    is_index: bool
    platform: str | None = None
    #: For a BuildKit attestation manifest: the digest of the manifest it is about.
    attestation_for: str | None = None

    @property
    def digest(self) -> str:
        return self.descriptor.digest


@dataclass(frozen=True)
class Attestation:
    predicate_type: str
    referrer: str  # digest of the artifact manifest


@dataclass(frozen=True)
class SignedManifest:
    digest: str
    media_type: str
    platform: str | None
    signature: str  # digest of the signature's artifact manifest
    attestations: tuple[Attestation, ...] = ()
    is_index: bool = False
    attestation_for: str | None = None

    def to_dict(self) -> JSONObject:
        out: JSONObject = {
            "digest": self.digest,
            "mediaType": self.media_type,
            "platform": self.platform,
            "index": self.is_index,
            "signature": self.signature,
            "attestations": [
                {"predicateType": a.predicate_type, "digest": a.referrer} for a in self.attestations
            ],
        }
        if self.attestation_for is not None:
            out["attestationFor"] = self.attestation_for
        return out


@dataclass(frozen=True)
class SigningResult:
    reference: Reference  # what was asked, pinned to the digest signed
    digest: str
    identity: SignerIdentity
    manifests: tuple[SignedManifest, ...]
    #: Seconds per phase (resolve, token, pktoken, push), for benchmarks and --verbose.
    timings: Mapping[str, float] = field(default_factory=dict, compare=False)

    @property
    def issuer(self) -> str:
        return self.identity.issuer

    @property
    def signatures(self) -> list[str]:
        return [m.signature for m in self.manifests]

    @property
    def attestations(self) -> list[str]:
        return [a.referrer for m in self.manifests for a in m.attestations]

    def to_dict(self, image: str | None = None) -> JSONObject:
        """The ``sign --output json`` document (docs/schemas/sign.schema.json). As in every
        opk-sign JSON document: ``image`` is the reference as the user gave it (default: the
        canonical reference signed, pinned to its digest), ``reference`` the normalised
        registry/repository, ``digest`` the top-level digest."""
        return {
            "image": str(self.reference) if image is None else image,
            "reference": self.reference.name,
            "digest": self.digest,
            "identity": self.identity.principal,
            "issuer": self.issuer,
            "claims": self.identity.to_dict(),
            "signatures": self.signatures,
            "attestations": self.attestations,
            "manifests": [m.to_dict() for m in self.manifests],
        }


# --- the PK token ---------------------------------------------------------------------------------


def obtain_signer(
    provider: TokenProvider, *, jwks: JWKSCache | None = None, now: float | None = None
) -> Signer:
    """Steps 1 to 3: an ephemeral key, the ID token committing to it, checked, and the PK token."""
    user_key = UserKey.generate("ES256")
    cic_header = new_cic_header(user_key)
    audience = commitment(cic_header)
    issuer = provider.issuer_hint
    id_token = provider.id_token(audience)
    cache = jwks if jwks is not None else JWKSCache()
    issuer_jwks = cache.get(issuer)
    # The ID token is checked before anything is built on it: signature by the issuer's key,
    # iss, aud == our commitment, times. Its claims then feed the provenance.
    claims = verify_id_token(id_token, issuer_jwks, issuer=issuer, audience=audience, now=now)
    try:
        kid = CompactJWS.parse(id_token, "ID token").header("ID token").get("kid")
        kid = kid if isinstance(kid, str) else None
        op_jwk = select_key(list(issuer_jwks["keys"]), issuer, kid)
        pk_token = PKToken.build(gq.sign_jwt(id_token, op_jwk), cic_header, user_key)
    except FormatError as err:
        raise TrustError(f"could not turn the ID token into a PK token: {err.message}") from None
    del id_token  # from here on only the PK token, which cannot be replayed, is kept
    # What a verifier will do, done once here so that a broken token is never published.
    verify_pktoken(pk_token, StaticJWKS(issuer, issuer_jwks), issuers={issuer}, now=now)
    return Signer(user_key, pk_token, claims)


# --- manifests ------------------------------------------------------------------------------------


def collect_manifests(
    client: RegistryClient,
    reference: Reference,
    recursive: bool,
    attestation_manifests: bool = False,
) -> tuple[Descriptor, list[ManifestToSign]]:
    """Step 4: the digest ``reference`` names now, and the manifests to sign (children first);
    with ``attestation_manifests``, BuildKit's attestation manifests too."""
    try:
        top, data = client.pull_manifest(reference)
    except NotFoundError as err:  # the image itself is missing: 15, never retried as a 13
        if isinstance(err, ImageNotFoundError):
            raise
        raise ImageNotFoundError(
            f"{reference}: no such image ({err.message})",
            hint="check the name and the tag or digest (`opk-sign inspect IMAGE`)",
        ) from None
    manifest = client.parse(top, data)
    if not isinstance(manifest, ImageIndex):
        found = [ManifestToSign(top, is_index=False)]
    else:
        found = []
        if recursive:
            _children(client, reference, manifest, found, depth=0)
            if attestation_manifests:
                found += [
                    ManifestToSign(child, is_index=False, attestation_for=attestation_target(child))
                    for child in manifest.manifests
                    if is_attestation_descriptor(child)
                ]
        found.append(ManifestToSign(top, is_index=True))
    if attestation_manifests:
        found[:0] = _referred_attestations(client, reference, found)
    return top, found


def _referred_attestations(
    client: RegistryClient, reference: Reference, found: list[ManifestToSign]
) -> list[ManifestToSign]:
    """BuildKit attestation manifests pushed as referrers of a platform manifest, not listed."""
    known = {t.digest for t in found}
    extra: list[ManifestToSign] = []
    for target in [t for t in found if not t.is_index and t.attestation_for is None]:
        for referrer in client.list_referrers(reference, target.digest):
            if referrer.artifact_type == BUILDKIT_ATTESTATION and referrer.digest not in known:
                known.add(referrer.digest)
                plain = Descriptor(referrer.media_type, referrer.digest, referrer.size)
                extra.append(ManifestToSign(plain, is_index=False, attestation_for=target.digest))
    return extra


def _children(
    client: RegistryClient,
    reference: Reference,
    index: ImageIndex,
    found: list[ManifestToSign],
    depth: int,
) -> None:
    for child in index.manifests:
        if child.media_type not in mediatypes.MANIFEST_MEDIA_TYPES:
            continue
        if child.annotations.get(_DOCKER_REFERENCE_TYPE) == "attestation-manifest":
            continue  # buildx's own attestation blobs, not something that runs
        if child.media_type in mediatypes.INDEX_MEDIA_TYPES:
            if depth >= 4:
                raise SigningError(f"image index nested deeper than 4 levels at {child.digest}")
            descriptor, data = client.pull_manifest(reference, child.digest)
            nested = client.parse(descriptor, data)
            if isinstance(nested, ImageIndex):
                _children(client, reference, nested, found, depth + 1)
            found.append(ManifestToSign(child, is_index=True))
            continue
        if any(m.digest == child.digest for m in found):
            continue
        found.append(
            ManifestToSign(child, is_index=False, platform=str(child.platform or "") or None)
        )


# --- pushing --------------------------------------------------------------------------------------


@dataclass
class _Outcome:
    target: ManifestToSign
    stored: list[tuple[str | None, Descriptor]] = field(default_factory=list)
    listing: PendingReferrers | None = None
    attestations: list[Attestation] = field(default_factory=list)
    signature: str | None = None
    error: OpkSignError | None = None


def _sign_one(
    client: RegistryClient,
    repository: Reference,
    *,
    signer: Signer,
    target: ManifestToSign,
    options: SigningOptions,
    created: datetime,
    tsa: requests.Session | None,
    tlog: _TlogWriter | None = None,
) -> _Outcome:
    """Store every referrer of ``target`` and write them to its listing; :func:`_confirm` ends."""
    outcome = _Outcome(target)
    subject = Descriptor(target.descriptor.media_type, target.digest, target.descriptor.size)
    try:
        # Every bundle of this manifest, attestations first, made (and timestamped) before any
        # is pushed: a TSA failure leaves nothing of this manifest in the registry.
        bundles: list[tuple[str | None, Bundle]] = []
        if not target.is_index and target.attestation_for is None:
            predicates: list[tuple[str, Mapping[str, Any]]] = []
            if options.provenance:
                predicates.append(signer.provenance(options.server_url))
            if options.predicate is not None:
                predicates.append((options.predicate.predicate_type, options.predicate.predicate))
            for predicate_type, predicate in predicates:
                bundle = signer.attestation(
                    repository.name, target.digest, predicate_type, predicate
                )
                bundles.append((predicate_type, bundle))
        bundles.append((None, signer.signature(repository.name, target.digest)))
        if options.timestamp_url is not None:
            bundles = [
                (kind, _timestamped(bundle, options.timestamp_url, tsa)) for kind, bundle in bundles
            ]
        if tlog is not None:  # logged before anything is pushed: a log failure pushes nothing
            bundles = tlog.logged(bundles, f"{repository.name}@{target.digest}")
        for kind, bundle in bundles:
            annotations = signer.annotations(created, kind)
            outcome.stored.append((kind, _store(client, repository, subject, bundle, annotations)))
        # One fallback-index update for all referrers of this manifest (nothing to do where the
        # registry has the referrers API); until its write lands, none of them is listed.
        outcome.listing = client.write_referrers(
            repository, target.digest, [d for _, d in outcome.stored]
        )
    except OpkSignError as err:
        outcome.error = err
    return outcome


def _confirm(outcome: _Outcome) -> _Outcome:
    """Wait until the listing is confirmed (the settle time after the write); then it is signed."""
    if outcome.error is not None or outcome.listing is None:
        return outcome
    try:
        outcome.listing.confirm()
    except OpkSignError as err:
        outcome.error = err
        return outcome
    for kind, descriptor in outcome.stored:
        if kind is None:
            outcome.signature = descriptor.digest
        else:
            outcome.attestations.append(Attestation(kind, descriptor.digest))
    return outcome


@dataclass(frozen=True)
class _TlogWriter:
    """Logs bundles in a Rekor v2 log, each under a certificate of the run's key carrying the
    PK token and naming what the bundle signs (docs/transparency.md)."""

    url: str
    signer: Signer
    server_url: str
    session: requests.Session

    def logged(
        self, bundles: list[tuple[str | None, Bundle]], signed: str
    ) -> list[tuple[str | None, Bundle]]:
        """Each bundle (of ``signed``, ``repository@digest``) with its log entry; the requests
        in parallel (each waits for the log's next checkpoint, so they share one wait)."""
        from cryptography.hazmat.primitives.asymmetric import ec

        from opk_sign.tlog.cert import SignedSubject, build_certificate
        from opk_sign.tlog.client import log_entry
        from opk_sign.tlog.hashedrekord import signed_digest

        key = self.signer.user_key.private_key
        assert isinstance(key, ec.EllipticCurvePrivateKey)  # the Signer checks it is ES256

        def one(item: tuple[str | None, Bundle]) -> Bundle:
            kind, bundle = item
            certificate = build_certificate(
                self.signer.pk_token,
                key,
                self.signer.claims,
                server_url=self.server_url,
                subject=SignedSubject(signed, kind or "signature"),
            )
            entry = log_entry(self.url, signed_digest(bundle), certificate, self.session)
            return replace(bundle, tlog_entries=(entry,))

        with ThreadPoolExecutor(max_workers=max(1, len(bundles))) as pool:
            done = list(pool.map(one, bundles))
        return [(kind, bundle) for (kind, _), bundle in zip(bundles, done, strict=True)]


def _tlog_writer(signer: Signer, opts: SigningOptions) -> _TlogWriter | None:
    if not should_log(opts.tlog, dict(signer.claims)):
        return None
    from opk_sign.tlog.client import LOG_TIMEOUT

    return _TlogWriter(opts.tlog_url, signer, opts.server_url, new_session(LOG_TIMEOUT))


def _timestamped(bundle: Bundle, url: str, session: requests.Session | None) -> Bundle:
    """The bundle with one RFC 3161 timestamp over its signature bytes."""
    timestamp = request_timestamp(url, bundle.signature_bytes(), session)
    return replace(bundle, timestamps=(timestamp,))


def _store(
    client: RegistryClient,
    repository: Reference,
    subject: Descriptor,
    bundle: Bundle,
    annotations: Mapping[str, str],
) -> Descriptor:
    return client.attach_artifact(
        repository,
        subject,
        bundle.artifact_type,
        bundle.to_json(),
        BUNDLE_MEDIA_TYPE,
        annotations,
        index_referrer=False,
    )


def _failure(outcomes: list[_Outcome], pending: list[ManifestToSign]) -> SigningError:
    def name(target: ManifestToSign) -> str:
        kind = "index" if target.is_index else (target.platform or "manifest")
        return f"{target.digest} ({kind})"

    signed = [name(o.target) for o in outcomes if o.signature is not None]
    failed = [o for o in outcomes if o.error is not None]
    lines = ["signing failed"]
    for outcome in failed:
        assert outcome.error is not None
        lines.append(f"  not signed: {name(outcome.target)}: {outcome.error.message}")
    for target in pending:
        lines.append(f"  not signed: {name(target)}: skipped because a platform manifest failed")
    lines.append("  signed: " + (", ".join(signed) if signed else "none"))
    first = failed[0].error if failed else None
    error = SigningError(
        "\n".join(lines),
        hint=(first.hint if first is not None and first.hint else None)
        or "run the command again: re-signing a manifest only adds a referrer",
    )
    # The exit code of the cause (registry 13, usage 2, ...) says more than "failure".
    error.exit_code = first.exit_code if first is not None else EXIT_FAILURE
    return error


def sign_image(
    image: Reference | str,
    *,
    provider: TokenProvider,
    client: RegistryClient,
    options: SigningOptions | None = None,
    jwks: JWKSCache | None = None,
    now: float | None = None,
    on_signed: Callable[[SignedManifest], None] | None = None,
    signer: Signer | None = None,
) -> SigningResult:
    """Sign ``image`` (a tag signs what the tag points to now) and push its referrers. A
    ``signer`` made before (:func:`obtain_signer`) signs several images with one key and one PK
    token (``sign --images-from``)."""
    opts = options or SigningOptions()
    reference = image if isinstance(image, Reference) else Reference.parse(image)
    timings: dict[str, float] = {}
    # The PK token first: a job without an ID token fails before the registry is asked anything.
    started = time.perf_counter()
    if signer is None:
        signer = obtain_signer(provider, jwks=jwks, now=now)
    timings["pktoken"] = time.perf_counter() - started

    mark = time.perf_counter()
    top, targets = collect_manifests(client, reference, opts.recursive, opts.attestation_manifests)
    timings["resolve"] = time.perf_counter() - mark
    created = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    repository = reference.repo()

    mark = time.perf_counter()
    platforms = [t for t in targets if not t.is_index]
    indexes = [t for t in targets if t.is_index]
    outcomes: list[_Outcome] = []
    workers = min(MAX_PARALLEL_MANIFESTS, max(1, len(platforms)))
    tsa = new_session() if opts.timestamp_url is not None else None
    tlog = _tlog_writer(signer, opts)

    def sign_one(target: ManifestToSign) -> _Outcome:
        return _sign_one(
            client,
            repository,
            signer=signer,
            target=target,
            options=opts,
            created=created,
            tsa=tsa,
            tlog=tlog,
        )

    pending: list[ManifestToSign] = []
    confirming: list[Future[_Outcome]] = []
    index_outcomes: list[_Outcome] = []

    def failed() -> bool:
        return any(o.error is not None for o in [*outcomes, *index_outcomes]) or any(
            c.done() and c.result().error is not None for c in confirming
        )

    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # Platform manifests in parallel: referrers stored and written to their listings.
            outcomes += pool.map(sign_one, platforms)
            # Their listings are confirmed in the background (each waits out its settle time)
            # while the indexes are signed, so the waits overlap instead of adding up.
            confirming += [pool.submit(_confirm, o) for o in outcomes if o.error is None]
            # An index is signed only once every manifest it lists has its referrers stored and
            # written to its listing: its signature vouches for the image. Nested indexes come
            # before the indexes listing them (collect_manifests orders them so).
            for target in indexes:
                if failed():
                    pending.append(target)
                    continue
                index_outcomes.append(sign_one(target))
            for outcome in index_outcomes:
                _confirm(outcome)
            for future in confirming:
                future.result()  # updates its outcome (in ``outcomes``) in place
        outcomes += index_outcomes
    finally:
        if tsa is not None:
            tsa.close()
        if tlog is not None:
            tlog.session.close()
    timings["push"] = time.perf_counter() - mark
    timings["total"] = time.perf_counter() - started

    if any(o.error is not None for o in outcomes):
        raise _failure(outcomes, pending)
    signed = []
    for outcome in outcomes:
        assert outcome.signature is not None
        item = SignedManifest(
            digest=outcome.target.digest,
            media_type=outcome.target.descriptor.media_type,
            platform=outcome.target.platform,
            signature=outcome.signature,
            attestations=tuple(outcome.attestations),
            is_index=outcome.target.is_index,
            attestation_for=outcome.target.attestation_for,
        )
        signed.append(item)
        if on_signed is not None:
            on_signed(item)
    return SigningResult(
        reference=reference.with_digest(top.digest),
        digest=top.digest,
        identity=signer.identity,
        manifests=tuple(signed),
        timings=timings,
    )
