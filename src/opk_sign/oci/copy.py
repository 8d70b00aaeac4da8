"""Copy an image, every platform and every referrer (recursively), between repositories.

Order on the destination, so that nothing ever points at something missing: blobs, then each
platform manifest, then the index (tagged last), then the referrers of each manifest, their
blobs first, their manifests next, the fallback index (where needed) last. Manifests are copied as
the exact bytes read, so digests, and signatures over them, stay valid.
"""

from __future__ import annotations

import tempfile
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from opk_sign.errors import UsageError
from opk_sign.oci import limits, mediatypes
from opk_sign.oci.client import RefLike, RegistryClient, referrer_descriptor
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.manifest import ImageIndex, Manifest
from opk_sign.oci.reference import Reference, as_reference

#: Subjects whose referrers are copied at the same time.
COPY_THREADS = 4


@dataclass
class CopyReport:
    source: Reference
    destination: Reference
    digest: str = ""
    manifests: int = 0
    blobs_copied: int = 0
    blobs_present: int = 0
    blobs_mounted: int = 0
    referrers: int = 0
    bytes_copied: int = 0
    referrer_digests: list[str] = field(default_factory=list)
    #: Referrers the source listed for a subject their manifest does not name: not copied.
    skipped: list[str] = field(default_factory=list)
    #: The annotations of the top-level manifest's referrers as listed (unsigned hints).
    top_referrers: list[Descriptor] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"copied {self.source} to {self.destination.repo()}@{self.digest}: "
            f"{self.manifests} manifests, {self.referrers} referrers, "
            f"{self.blobs_copied} blobs copied ({self.bytes_copied} bytes), "
            f"{self.blobs_mounted} mounted, {self.blobs_present} already there"
            + (
                f"; {len(self.skipped)} listed referrers left out (their subject is another "
                "manifest)"
                if self.skipped
                else ""
            )
        )


def copy_image(
    client: RegistryClient, source: RefLike, destination: RefLike, *, referrers: bool = True
) -> CopyReport:
    """Copy ``source`` (all platforms, all referrers) to ``destination`` (its tag, or digest)."""
    src = as_reference(source)
    dst = as_reference(destination)
    if not src.tag and not src.digest:
        src = src.with_tag("latest")
    descriptor, data = client.pull_manifest(src)
    if dst.digest and dst.digest != descriptor.digest:
        raise UsageError(f"{dst} names digest {dst.digest}, but {src} is {descriptor.digest}")
    tag = dst.tag if (dst.tag or dst.digest) else src.tag
    copier = _Copier(client, src.repo(), dst.repo(), CopyReport(src, dst, descriptor.digest))
    subjects = copier.copy_manifest(descriptor, data, tag)
    copier.report.manifests = len(subjects)
    depth = 0
    # Level by level (referrers, then their referrers...), the subjects of a level in parallel:
    # on a destination without the referrers API each subject costs one fallback-index round.
    with ThreadPoolExecutor(max_workers=COPY_THREADS) as pool:
        while referrers and subjects and depth < limits.MAX_REFERRER_DEPTH:
            found = list(pool.map(copier.copy_referrers, subjects))
            subjects = [digest for level in found for digest in level]
            depth += 1
    return copier.report


class _Copier:
    def __init__(
        self, client: RegistryClient, src: Reference, dst: Reference, report: CopyReport
    ) -> None:
        self.client = client
        self.src = src
        self.dst = dst
        self.report = report
        self._blobs: dict[str, Future[None]] = {}
        self._manifests: set[str] = set()
        self._referrers: set[str] = set()
        self._lock = threading.Lock()

    def copy_manifest(self, descriptor: Descriptor, data: bytes, tag: str | None) -> list[str]:
        """Copy one manifest and what it points at; returns the digests of every manifest copied."""
        manifest = self.client.parse(descriptor, data)
        with self._lock:
            new = descriptor.digest not in self._manifests
        copied = self._copy_content(manifest) if new else []
        self.client.put_manifest(
            self.dst, data, descriptor.media_type, tag=tag, index_referrer=False
        )
        if new:
            with self._lock:
                self._manifests.add(descriptor.digest)
            copied.append(descriptor.digest)
        return copied

    def _copy_content(self, manifest: Manifest) -> list[str]:
        if isinstance(manifest, ImageIndex):
            copied = []
            for child in manifest.manifests:
                if child.media_type not in mediatypes.MANIFEST_MEDIA_TYPES:
                    continue
                child_descriptor, child_data = self.client.pull_manifest(self.src, child.digest)
                copied += self.copy_manifest(child_descriptor, child_data, None)
            return copied
        for blob in manifest.blobs():
            self._copy_blob(blob)
        return []

    def copy_referrers(self, subject: str) -> list[str]:
        """Copy the referrers of ``subject``; returns the digests of those copied now for the
        first time (the next level's subjects).

        The source's listing is a claim: a manifest is copied as a referrer of ``subject`` only
        when its own ``subject`` names it (else a hostile source could attach anything to any
        manifest of the destination), and each referrer's own referrers are followed once (a
        listing that repeats the same manifests under every subject would otherwise grow
        exponentially with the depth)."""
        found = [r for r in self.client.list_referrers(self.src, subject) if r.digest != subject]
        if subject == self.report.digest:
            self.report.top_referrers = found
        stored: list[Descriptor] = []
        first_seen: list[str] = []
        for referrer in found:
            descriptor, data = self.client.pull_manifest(self.src, referrer.digest)
            manifest = self.client.parse(descriptor, data)
            named = getattr(manifest, "subject", None)
            if named is None or named.digest != subject:
                with self._lock:
                    self.report.skipped.append(referrer.digest)
                continue
            with self._lock:
                new = referrer.digest not in self._referrers
                if new:
                    self._referrers.add(referrer.digest)
                    self.report.referrers += 1
                    self.report.referrer_digests.append(referrer.digest)
            self.copy_manifest(descriptor, data, None)
            stored.append(referrer_descriptor(manifest, descriptor.media_type, descriptor.digest))
            if new:
                first_seen.append(referrer.digest)
        # One fallback-index update per subject, after every referrer manifest is stored.
        self.client.register_referrers(self.dst, subject, stored)
        return first_seen

    def _copy_blob(self, blob: Descriptor) -> None:
        """Copy a blob once; a thread needing a blob another thread is copying waits for it, so
        that no manifest is pushed before its blobs are there."""
        mine: Future[None] = Future()
        with self._lock:
            pending = self._blobs.setdefault(blob.digest, mine)
        if pending is not mine:
            pending.result()
            return
        try:
            self._transfer_blob(blob)
        except BaseException as err:
            mine.set_exception(err)
            raise
        mine.set_result(None)

    def _transfer_blob(self, blob: Descriptor) -> None:
        if self.client.blob_exists(self.dst, blob.digest):
            self._count(blobs_present=1)
            return
        if self.src.registry == self.dst.registry and self.client.mount_blob(
            self.dst, blob.digest, self.src.repository
        ):
            self._count(blobs_mounted=1)
            return
        with tempfile.SpooledTemporaryFile(max_size=limits.COPY_IN_MEMORY_MAX_BYTES) as spool:
            self.client.download_blob(self.src, blob, spool)
            self.client.upload_blob(self.dst, blob.digest, blob.size, spool)
        self._count(blobs_copied=1, bytes_copied=blob.size)

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, value in increments.items():
                setattr(self.report, name, getattr(self.report, name) + value)
