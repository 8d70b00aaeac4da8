"""The registry client: manifests, blobs and referrers over the OCI distribution API.

One ``RegistryClient`` per run, shared by every thread: it holds the HTTP sessions (one connection
pool), the bearer tokens of every repository scope, and what it learnt about each registry
(referrers API or not, single-request uploads or not). Every method takes a ``Reference`` or a
reference string; where a digest is passed separately, the reference's tag and digest are ignored.

Failures are ``RegistryError``s: ``NotFoundError`` for a missing manifest or blob,
``RegistryAuthError`` for refused credentials, ``RegistryUnavailableError`` when the registry could
not be reached or kept failing after retries. "Unavailable" is never read as "nothing there".
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import IO
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import requests

from opk_sign.errors import (
    FormatError,
    RegistryAuthError,
    RegistryError,
    RegistryUnavailableError,
    UsageError,
)
from opk_sign.http import DEFAULT_HTTP, RETRY_STATUSES, HTTPConfig
from opk_sign.oci import limits, mediatypes
from opk_sign.oci.auth import Scope
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.digest import (
    is_digest,
    new_hasher,
    sha256_digest,
    split_digest,
    verify_digest,
)
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.manifest import (
    ImageIndex,
    Manifest,
    build_artifact_manifest,
    empty_descriptor,
    media_type_of,
    parse_manifest,
)
from opk_sign.oci.reference import Reference, as_reference
from opk_sign.oci.referrers import (
    SettlePolicy,
    fallback_tag,
    filter_by_artifact_type,
    index_digest,
    lists_all,
    merge_referrers_index,
    parse_referrers_index,
    referrer_entry,
)
from opk_sign.oci.transport import (
    CHUNK,
    BlobUnknownError,
    Body,
    ConnectionLost,
    Transport,
    rewind,
)
from opk_sign.urls import InsecureRegistries

RefLike = Reference | str

#: Least wait after writing a fallback referrers index before reading it back to confirm our
#: entries survived, while no other writer has been seen; the client waits at least four times
#: the read-to-write time it measured (SettlePolicy, docs/registry.md).
DEFAULT_FALLBACK_SETTLE = SettlePolicy.quiet
#: The base of that wait once another writer's change of the index has been seen.
DEFAULT_FALLBACK_CONTENDED_SETTLE = SettlePolicy.contended


_BLOB_UNKNOWN_RETRIES = 3


class RegistryClient:
    """A client for OCI registries, safe to share between threads.

    Registries are reached over HTTPS; plain HTTP only on loopback and for the registries in
    ``insecure_registries`` (exactly as named: docs/registry.md, "Plain HTTP"). Without it, they
    are read from ``$OPK_SIGN_INSECURE_REGISTRIES`` (a bad value is a UsageError), as the
    keychain defaults to the docker config; pass ``InsecureRegistries()`` for none. The first
    plain-HTTP exchange with each host off loopback is a warning through ``notice`` (default:
    a line on stderr).
    """

    def __init__(
        self,
        credentials: Keychain | None = None,
        http: HTTPConfig = DEFAULT_HTTP,
        *,
        fallback_settle: float = DEFAULT_FALLBACK_SETTLE,
        fallback_contended_settle: float = DEFAULT_FALLBACK_CONTENDED_SETTLE,
        insecure_registries: InsecureRegistries | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.http = http
        self.insecure_registries = (
            insecure_registries
            if insecure_registries is not None
            else InsecureRegistries.from_environment(os.environ)
        )
        self.keychain = credentials if credentials is not None else Keychain.default()
        self.fallback_settle = fallback_settle
        self.settle_policy = SettlePolicy(
            quiet=fallback_settle, contended=fallback_contended_settle
        )
        self.transport = Transport(
            self.keychain, http, insecure=self.insecure_registries, notice=notice
        )
        self.auth = self.transport.auth
        self._referrers_api: dict[str, bool] = {}
        # Repositories known to hold the empty config blob: checked once per run, not per referrer.
        self._empty_config_present: set[tuple[str, str]] = set()
        self._single_post: dict[str, bool] = {}

    def close(self) -> None:
        self.transport.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- manifests -------------------------------------------------------------------------------

    def resolve(self, ref: RefLike) -> Descriptor:
        """The descriptor (digest, media type, size) of the manifest ``ref`` names: one HEAD."""
        ref = as_reference(ref)
        what = f"resolve {ref}"
        resp = self.transport.request(
            "HEAD",
            ref,
            f"manifests/{ref.identifier}",
            headers={"Accept": mediatypes.MANIFEST_ACCEPT},
        )
        with resp:
            if resp.status_code != 200:
                self.transport.fail(resp, what)
            digest = resp.headers.get("Docker-Content-Digest", "")
            media_type = resp.headers.get("Content-Type", "").split(";", 1)[0].strip()
            size = resp.headers.get("Content-Length", "")
        if is_digest(digest) and media_type in mediatypes.MANIFEST_MEDIA_TYPES and size.isdigit():
            if ref.digest and digest != ref.digest:
                raise RegistryError(f"{what}: the registry answered for digest {digest}")
            return Descriptor(media_type, digest, int(size))
        # An incomplete HEAD answer (some registries omit the digest): fetch and hash.
        descriptor, _ = self.pull_manifest(ref)
        return descriptor

    def pull_manifest(self, ref: RefLike, digest: str | None = None) -> tuple[Descriptor, bytes]:
        """The manifest's descriptor and exact bytes; content fetched by digest is verified."""
        ref = as_reference(ref)
        if digest is not None:
            ref = ref.with_digest(digest)
        what = f"manifest {ref}"
        for attempt in range(2):
            resp = self.transport.request(
                "GET",
                ref,
                f"manifests/{ref.identifier}",
                headers={"Accept": mediatypes.MANIFEST_ACCEPT},
                stream=True,
            )
            if resp.status_code != 200:
                with resp:
                    self.transport.fail(resp, what)
            header_digest = resp.headers.get("Docker-Content-Digest", "")
            content_type = resp.headers.get("Content-Type")
            try:
                data = self.transport.read(resp, limits.MAX_MANIFEST_BYTES, what)
                break
            except ConnectionLost:
                if attempt:
                    raise
        expected = ref.digest or (header_digest if is_digest(header_digest) else None)
        if expected:
            verify_digest(data, expected, what)
        try:
            media_type = media_type_of(data, content_type)
        except FormatError as err:
            raise RegistryError(f"{what}: not a manifest: {err}") from None
        actual = expected or sha256_digest(data)
        return Descriptor(media_type, actual, len(data)), data

    def get_manifest(self, ref_or_repo: RefLike, digest: str | None = None) -> tuple[bytes, str]:
        """``(bytes, media type)`` of a manifest, by ``digest`` or by the reference's tag."""
        descriptor, data = self.pull_manifest(ref_or_repo, digest)
        return data, descriptor.media_type

    def put_manifest(
        self,
        repo: RefLike,
        data: bytes,
        media_type: str,
        tag: str | None = None,
        *,
        index_referrer: bool = True,
    ) -> str:
        """Store a manifest (by tag, else by digest) and return its digest.

        A manifest with a ``subject`` is a referrer: on a registry without the referrers API it is
        then added to the subject's fallback index, after the manifest itself is stored (unless
        ``index_referrer`` is false: the caller batches that with ``register_referrers``).
        """
        ref = as_reference(repo)
        if len(data) > limits.MAX_MANIFEST_BYTES:
            raise UsageError(
                f"manifest of {len(data)} bytes is over the {limits.MAX_MANIFEST_BYTES}-byte limit"
            )
        try:
            manifest = parse_manifest(data, media_type)
        except FormatError as err:
            raise UsageError(f"refusing to push an invalid manifest: {err}") from None
        digest = sha256_digest(data)
        target = ref.with_tag(tag) if tag else ref.with_digest(digest)
        what = f"push manifest {ref.name}@{digest}"
        for attempt in range(_BLOB_UNKNOWN_RETRIES + 1):
            resp = self.transport.request(
                "PUT",
                target,
                f"manifests/{tag or digest}",
                push=True,
                headers={"Content-Type": media_type},
                data=data,
            )
            try:
                with resp:
                    if resp.status_code not in (200, 201):
                        self.transport.fail(resp, what)
                    stored = resp.headers.get("Docker-Content-Digest")
                break
            except BlobUnknownError:
                # A blob we just stored may not be visible yet: registries on eventually
                # consistent storage, or distribution while another client links the same
                # blob into the repository (it rewrites the link file in place).
                if attempt == _BLOB_UNKNOWN_RETRIES:
                    raise
                time.sleep(0.1 * 2**attempt * random.uniform(1.0, 1.5))  # noqa: S311 - jitter
        if stored and stored.startswith("sha256:") and stored != digest:
            raise RegistryError(f"{what}: the registry stored it as {stored}")
        if manifest.subject is not None and index_referrer:
            self.register_referrers(
                ref, manifest.subject.digest, [referrer_descriptor(manifest, media_type, digest)]
            )
        return digest

    def walk(self, ref: RefLike) -> Iterator[tuple[Descriptor, Manifest]]:
        """The manifest ``ref`` names, then (for an index) each manifest it lists, depth first."""
        ref = as_reference(ref)
        descriptor, data = self.pull_manifest(ref)
        yield from self._walk(ref, descriptor, data, depth=0)

    def _walk(
        self, ref: Reference, descriptor: Descriptor, data: bytes, depth: int
    ) -> Iterator[tuple[Descriptor, Manifest]]:
        manifest = self.parse(descriptor, data)
        yield descriptor, manifest
        if isinstance(manifest, ImageIndex) and depth < limits.MAX_REFERRER_DEPTH:
            for child in manifest.manifests:
                if child.media_type not in mediatypes.MANIFEST_MEDIA_TYPES:
                    continue
                child_descriptor, child_data = self.pull_manifest(ref, child.digest)
                child_descriptor = replace(
                    child, media_type=child_descriptor.media_type, size=child_descriptor.size
                )
                yield from self._walk(ref, child_descriptor, child_data, depth + 1)

    @staticmethod
    def parse(descriptor: Descriptor, data: bytes) -> Manifest:
        try:
            return parse_manifest(data, descriptor.media_type)
        except FormatError as err:
            raise RegistryError(f"manifest {descriptor.digest} is invalid: {err}") from None

    # --- blobs -----------------------------------------------------------------------------------

    def get_blob(
        self, repo: RefLike, digest: str, max_size: int = limits.MAX_BUNDLE_BYTES
    ) -> bytes:
        """A blob's bytes, verified against ``digest``; refused if larger than ``max_size``."""
        ref = as_reference(repo)
        split_digest(digest)
        what = f"blob {ref.name}@{digest}"
        for attempt in range(2):
            resp = self.transport.request("GET", ref, f"blobs/{digest}", stream=True)
            if resp.status_code != 200:
                with resp:
                    self.transport.fail(resp, what)
            try:
                data = self.transport.read(resp, max_size, what)
                break
            except ConnectionLost:
                if attempt:
                    raise
        verify_digest(data, digest, what)
        return data

    def download_blob(self, repo: RefLike, descriptor: Descriptor, sink: IO[bytes]) -> None:
        """Stream a blob of any size into ``sink``, verifying its digest and size on the way."""
        ref = as_reference(repo)
        what = f"blob {ref.name}@{descriptor.digest}"
        resp = self.transport.request("GET", ref, f"blobs/{descriptor.digest}", stream=True)
        with resp:
            if resp.status_code != 200:
                self.transport.fail(resp, what)
            hasher = new_hasher(descriptor.digest)
            size = 0
            try:
                for chunk in resp.iter_content(CHUNK):
                    size += len(chunk)
                    if size > descriptor.size:
                        raise RegistryError(
                            f"{what}: more than the {descriptor.size} bytes expected"
                        )
                    hasher.update(chunk)
                    sink.write(chunk)
            except requests.RequestException as err:
                raise ConnectionLost(f"{what}: connection lost while reading: {err}") from None
        actual = f"{descriptor.digest.split(':', 1)[0]}:{hasher.hexdigest()}"
        if actual != descriptor.digest or size != descriptor.size:
            raise RegistryError(f"{what}: received content with digest {actual}, {size} bytes")

    def blob_exists(self, repo: RefLike, digest: str) -> bool:
        ref = as_reference(repo)
        resp = self.transport.request("HEAD", ref, f"blobs/{digest}", push=False)
        with resp:
            if resp.status_code == 200:
                return True
            if resp.status_code == 404:
                return False
            self.transport.fail(resp, f"check blob {ref.name}@{digest}")

    def put_blob(
        self,
        repo: RefLike,
        data: bytes,
        media_type: str = mediatypes.OCTET_STREAM,
        *,
        check_exists: bool = True,
    ) -> Descriptor:
        """Upload ``data`` unless the registry has it; returns its descriptor."""
        ref = as_reference(repo)
        descriptor = Descriptor(media_type, sha256_digest(data), len(data))
        if check_exists and self.blob_exists(ref, descriptor.digest):
            return descriptor
        self.upload_blob(ref, descriptor.digest, len(data), data)
        return descriptor

    def mount_blob(self, repo: RefLike, digest: str, source_repository: str) -> bool:
        """Ask the registry to link a blob from another of its repositories: one request."""
        ref = as_reference(repo)
        resp = self.transport.request(
            "POST",
            ref,
            "blobs/uploads/",
            push=True,
            params={"mount": digest, "from": source_repository},
            headers={"Content-Length": "0"},
            extra_scopes=(Scope.repository(source_repository),),
        )
        with resp:
            if resp.status_code == 201:
                return True
            if resp.status_code == 202:  # no mount; the upload session it opened just expires
                return False
            self.transport.fail(
                resp, f"mount blob {digest} from {source_repository} into {ref.name}"
            )

    def upload_blob(self, repo: RefLike, digest: str, size: int, body: Body) -> None:
        """Upload a blob: a single POST where the registry takes it, else POST and one PUT.

        A broken upload is retried from the start once, after checking whether the blob arrived.
        """
        ref = as_reference(repo)
        for attempt in range(2):
            try:
                self._upload_once(ref, digest, size, body)
                return
            except RegistryAuthError:
                raise
            except RegistryError:
                # A lost answer or a broken upload session: the blob may have arrived anyway.
                if self.blob_exists(ref, digest):
                    return
                if attempt:
                    raise

    def _upload_once(self, ref: Reference, digest: str, size: int, body: Body) -> None:
        what = f"upload blob {ref.name}@{digest}"
        uploads = "blobs/uploads/"
        location: str | None = None
        if size <= limits.SINGLE_POST_MAX_BYTES and self._single_post.get(ref.registry, True):
            rewind(body)
            resp = self.transport.request(
                "POST",
                ref,
                uploads,
                push=True,
                params={"digest": digest},
                headers={"Content-Type": mediatypes.OCTET_STREAM, "Content-Length": str(size)},
                data=body,
            )
            with resp:
                if resp.status_code == 201:
                    self._single_post[ref.registry] = True
                    return
                if resp.status_code != 202:
                    self.transport.fail(resp, what)
                self._single_post[ref.registry] = False
                location = self.transport.location(resp, ref, what)
        if location is None:
            resp = self.transport.request(
                "POST", ref, uploads, push=True, headers={"Content-Length": "0"}
            )
            with resp:
                if resp.status_code != 202:
                    self.transport.fail(resp, what)
                location = self.transport.location(resp, ref, what)
        rewind(body)
        resp = self.transport.request(
            "PUT",
            ref,
            url=_with_query(location, digest=digest),
            push=True,
            headers={"Content-Type": mediatypes.OCTET_STREAM, "Content-Length": str(size)},
            data=body,
        )
        with resp:
            if resp.status_code not in (201, 204):
                self.transport.fail(resp, what)

    # --- referrers -------------------------------------------------------------------------------

    def list_referrers(
        self, repo: RefLike, digest: str, artifact_type: str | None = None
    ) -> list[Descriptor]:
        """The referrers of ``digest``: from the referrers API, or the fallback tag without one.

        One request on a registry with the API (or once it is known not to have it); two on the
        first call to a registry without it (the API probe, then the fallback tag).
        """
        ref = as_reference(repo)
        split_digest(digest)
        if self._referrers_api.get(ref.registry, True):
            found = self._referrers_from_api(ref, digest, artifact_type)
            if found is not None:
                return found
        index, _ = self._read_fallback(ref, fallback_tag(digest))
        if index is None:
            return []
        try:
            return filter_by_artifact_type(parse_referrers_index(index), artifact_type)
        except FormatError as err:
            raise RegistryError(
                f"referrers index {ref.name}:{fallback_tag(digest)} is invalid: {err}"
            ) from None

    def has_referrers_api(self, repo: RefLike, digest: str | None = None) -> bool:
        """Whether the registry serves the referrers API, probed once per registry and run.

        The probe is a referrers request for ``digest`` (any digest will do): 200 with an index
        means yes, 404 means no; anything else is an error, never a "no".
        """
        ref = as_reference(repo)
        known = self._referrers_api.get(ref.registry)
        if known is None:
            self._referrers_from_api(ref, digest or sha256_digest(b""), None)
            known = self._referrers_api[ref.registry]
        return known

    def attach_artifact(  # noqa: PLR0917 - the positional signature callers were promised
        self,
        repo: RefLike,
        subject: Descriptor,
        artifact_type: str,
        blob: bytes,
        blob_media_type: str,
        annotations: Mapping[str, str],
        *,
        index_referrer: bool = True,
    ) -> Descriptor:
        """Store ``blob`` as an OCI 1.1 artifact referring to ``subject``; returns its descriptor.

        With ``index_referrer`` false the fallback index is left to the caller, who batches the
        referrers of one subject into one :meth:`register_referrers` round.

        Order (so that nothing ever points at a missing blob): the empty config and the blob, then
        the artifact manifest, then, on a registry without the referrers API, the fallback index.
        Requests on a registry with the API: the API probe (once per run), one HEAD for the empty
        config, one POST for the blob (two where single-request upload is not taken), one PUT.
        """
        ref = as_reference(repo)
        if len(blob) > limits.MAX_BUNDLE_BYTES:
            raise UsageError(
                f"artifact blob of {len(blob)} bytes is over the {limits.MAX_BUNDLE_BYTES}-byte "
                "limit"
            )
        self.has_referrers_api(ref, subject.digest)  # an unreachable registry fails before writes
        config = empty_descriptor()
        repository = (ref.registry, ref.repository)
        if repository not in self._empty_config_present:
            if not self.blob_exists(ref, config.digest):
                self.upload_blob(ref, config.digest, config.size, mediatypes.EMPTY_JSON)
            self._empty_config_present.add(repository)
        layer = Descriptor(blob_media_type, sha256_digest(blob), len(blob))
        self.upload_blob(ref, layer.digest, layer.size, blob)
        manifest = build_artifact_manifest(subject, artifact_type, layer, annotations)
        digest = self.put_manifest(
            ref, manifest, mediatypes.OCI_MANIFEST, index_referrer=index_referrer
        )
        return Descriptor(
            mediatypes.OCI_MANIFEST,
            digest,
            len(manifest),
            annotations=dict(annotations),
            artifact_type=artifact_type,
        )

    def _referrers_from_api(
        self, ref: Reference, digest: str, artifact_type: str | None
    ) -> list[Descriptor] | None:
        """The referrers API answer (all pages), or None if the registry has no referrers API."""
        what = f"referrers of {ref.name}@{digest}"
        url = f"{self.transport.base(ref)}/v2/{ref.repository}/referrers/{digest}"
        params = {"artifactType": artifact_type} if artifact_type else None
        found: list[Descriptor] = []
        for page in range(limits.MAX_REFERRERS_PAGES):
            resp = self.transport.request(
                "GET",
                ref,
                url=url,
                params=params if page == 0 else None,
                headers={"Accept": mediatypes.OCI_INDEX},
                stream=True,
            )
            if resp.status_code in (404, 405) and page == 0:
                resp.close()
                self._referrers_api[ref.registry] = False
                return None
            if resp.status_code != 200:
                with resp:
                    self.transport.fail(resp, what)
            link = resp.links.get("next", {}).get("url")
            data = self.transport.read(resp, limits.MAX_MANIFEST_BYTES, what)
            try:
                found.extend(parse_referrers_index(data))
            except FormatError as err:
                raise RegistryError(f"{what}: invalid referrers answer: {err}") from None
            if len(found) > limits.MAX_REFERRERS:
                raise RegistryError(f"{what}: more than {limits.MAX_REFERRERS} referrers")
            self._referrers_api[ref.registry] = True
            if not link:
                # Filter ourselves whatever OCI-Filters-Applied says: a registry that ignored
                # the filter must not hand the caller other artifact types.
                return filter_by_artifact_type(found, artifact_type)
            url = urljoin(url, link)
        raise RegistryError(f"{what}: more than {limits.MAX_REFERRERS_PAGES} pages")

    def register_referrers(
        self, repo: RefLike, subject: str, referrers: Sequence[Descriptor]
    ) -> None:
        """Make stored referrer manifests of ``subject`` discoverable.

        Nothing to do on a registry with the referrers API (it indexes ``subject`` itself); else
        one read-merge-write-confirm round of the fallback index for all of them:
        :meth:`write_referrers`, then :meth:`PendingReferrers.confirm`.
        """
        self.write_referrers(repo, subject, referrers).confirm()

    def write_referrers(
        self, repo: RefLike, subject: str, referrers: Sequence[Descriptor]
    ) -> PendingReferrers:
        """List stored referrer manifests of ``subject``, without waiting to confirm the listing.

        On a registry without the referrers API: read the fallback index, merge, write, until a
        write is answered (or a read shows them listed). The listing may still be dropped by a
        concurrent writer's stale write; ``confirm()`` on the answer waits out the settle time,
        reads the index back and repairs it. Callers with other work (a signer's next manifest)
        do it in between, so the wait overlaps it. Nothing to do with the referrers API.
        """
        ref = as_reference(repo)
        if not referrers or self.has_referrers_api(ref, subject):
            return PendingReferrers(None)
        update = _FallbackUpdate(self, ref, subject, [referrer_entry(d) for d in referrers])
        update.run(until_written=True)
        return PendingReferrers(update)

    def _read_fallback(self, ref: Reference, tag: str) -> tuple[bytes | None, str | None]:
        """The fallback index under ``tag`` and its ETag; (None, None) if there is none yet."""
        what = f"referrers index {ref.name}:{tag}"
        resp = self.transport.request(
            "GET",
            ref,
            f"manifests/{tag}",
            headers={"Accept": mediatypes.OCI_INDEX},
            stream=True,
        )
        if resp.status_code == 404:
            resp.close()
            return None, None
        if resp.status_code != 200:
            with resp:
                self.transport.fail(resp, what)
        etag = resp.headers.get("ETag")
        return self.transport.read(resp, limits.MAX_MANIFEST_BYTES, what), etag


class PendingReferrers:
    """Referrers written to their subject's fallback index, not yet confirmed to have stayed.

    From :meth:`RegistryClient.write_referrers`; :meth:`confirm` finishes the update. Where the
    registry has the referrers API there is nothing to confirm.
    """

    def __init__(self, update: _FallbackUpdate | None) -> None:
        self._update = update

    @property
    def confirmed(self) -> bool:
        return self._update is None or self._update.done

    @property
    def index_writes(self) -> int:
        """Writes of the fallback index so far (0 with the referrers API)."""
        return 0 if self._update is None else self._update.writes

    def confirm(self) -> None:
        """Wait out the settle time, read the index back, merge and write again until our entries
        are still listed at a read that began a settle time after our last write."""
        if self._update is not None:
            self._update.run(until_written=False)


class _FallbackUpdate:
    """Adding entries to one subject's fallback index without losing anyone's (docs/registry.md).

    Rounds of: (wait until a confirming read is due), read, and, if our entries are missing,
    merge and write with ``If-Match`` where the registry gave an ``ETag``. Distribution ignores
    ``If-Match`` and keeps the last write of the tag, so a writer that read the index before our
    write landed and writes after it drops our entries; only our own read after that write lands
    sees it. Our entries are therefore confirmed by a read that starts a settle time
    (``SettlePolicy``) after our last write was answered. A read that shows another writer's
    change of the index makes the rest of the update contended: the longer contended
    settle, and two confirming reads, a settle time after our last write and another one later.
    """

    def __init__(
        self, client: RegistryClient, ref: Reference, subject: str, entries: Sequence[Descriptor]
    ) -> None:
        self.client = client
        self.ref = ref
        self.tag = fallback_tag(subject)
        self.what = f"referrers index {ref.name}:{self.tag}"
        self.entries = list(entries)
        self.rounds = 0
        self.writes = 0
        self.failures = 0
        self.seen_index = False
        self.contended = False
        #: When our last write was answered (it landed before), and the digest of what it wrote.
        self.last_write: float | None = None
        self.written: str | None = None
        self.read_to_write = 0.0
        #: A read that starts at this time or later confirms our entries (None: nothing to confirm).
        self.confirm_after: float | None = None
        #: Our entries are known to have been written (a write was answered, or a read showed them).
        self.listed = False
        #: Contended: a first confirming read since our last write found our entries.
        self.checked_twice = False
        self.done = False

    def run(self, *, until_written: bool) -> None:
        while not self.done and not (until_written and self.listed):
            if self.rounds >= limits.MAX_FALLBACK_ROUNDS:
                raise RegistryError(
                    f"{self.what} kept changing under us; referrers "
                    f"{', '.join(e.digest for e in self.entries)} are stored but may not be listed",
                    hint="run the command again: adding a referrer twice is harmless",
                )
            self.rounds += 1
            self._round()

    def _round(self) -> None:
        if self.confirm_after is not None:
            wait = self.confirm_after - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        read_at = time.monotonic()
        current, etag = self.client._read_fallback(self.ref, self.tag)
        if current is None and self.seen_index:
            # The index existed a moment ago: a missing one now is the registry in the middle of
            # a write, and writing ours from scratch would drop every entry.
            self.failures += 1
            self.client.transport.backoff(self.failures, None, self.what)
            return
        self.seen_index = self.seen_index or current is not None
        if self.written is not None and index_digest(current) != self.written:
            self._contention()  # someone wrote the index after our last write
        try:
            present = lists_all(current, [e.digest for e in self.entries])
            merged = None if present else merge_referrers_index(current, self.entries)
        except FormatError as err:
            raise RegistryError(
                f"{self.what} is not a referrers index ({err}); refusing to overwrite it"
            ) from None
        if present:
            self.listed = True
            if self.last_write is None:
                self.done = True  # listed before we wrote anything: nothing of ours can be lost
            elif self.confirm_after is not None and read_at >= self.confirm_after:
                if self.contended and not self.checked_twice:
                    # Writers are about: read once more, another settle time on, so that a
                    # write held up by the registry for up to twice the wait is seen too.
                    self.checked_twice = True
                    self.confirm_after += self._settle()
                else:
                    self.done = True
            return
        assert merged is not None
        self._write(merged, etag, read_at)

    def _write(self, merged: bytes, etag: str | None, read_at: float) -> None:
        headers = {"Content-Type": mediatypes.OCI_INDEX}
        if etag:
            headers["If-Match"] = etag
        self.writes += 1
        try:
            resp = self.client.transport.request(
                "PUT",
                self.ref,
                f"manifests/{self.tag}",
                push=True,
                headers=headers,
                data=merged,
                retry=False,  # a retried PUT would write a stale merge: back to a read instead
            )
        except RegistryUnavailableError:
            self._wrote(merged, self.read_to_write)  # it may have landed; confirm as if it did
            self.failures += 1
            self.client.transport.backoff(self.failures, None, self.what)
            return
        with resp:
            status = resp.status_code
            if status in (200, 201):
                self._wrote(merged, time.monotonic() - read_at)
                self.listed = True
                self.failures = 0
                return
            if status == 412:  # someone wrote since we read: read and merge again
                # Not counted as contention: a registry that checks If-Match turns away the stale
                # writes the wait is there for.
                time.sleep(random.uniform(0, 0.05))  # noqa: S311 - jitter, not a secret
                return
            if status in RETRY_STATUSES:
                self.failures += 1
                retry_after = resp.headers.get("Retry-After")
                self.client.transport.backoff(self.failures, retry_after, self.what)
                return
            self.client.transport.fail(resp, f"update {self.what}")

    def _wrote(self, merged: bytes, read_to_write: float) -> None:
        self.last_write = time.monotonic()
        self.written = sha256_digest(merged)
        self.read_to_write = read_to_write
        self.confirm_after = self.last_write + self._settle()
        self.checked_twice = False

    def _contention(self) -> None:
        if self.contended:
            return
        self.contended = True
        if self.last_write is not None:  # the longer wait counts from our last write too
            self.confirm_after = max(self.confirm_after or 0.0, self.last_write + self._settle())

    def _settle(self) -> float:
        policy = self.client.settle_policy
        draw = random.random()  # noqa: S311 - jitter, not a secret
        return policy.wait(self.read_to_write, contended=self.contended, draw=draw)


def referrer_descriptor(manifest: Manifest, media_type: str, digest: str) -> Descriptor:
    """The descriptor a referrers listing gives for a referrer manifest."""
    artifact_type = (
        manifest.artifact_type
        if isinstance(manifest, ImageIndex)
        else manifest.effective_artifact_type
    )
    return Descriptor(
        media_type,
        digest,
        len(manifest.raw),
        annotations=dict(manifest.annotations),
        artifact_type=artifact_type,
    )


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))
