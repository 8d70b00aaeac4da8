"""What "no referrer ever points at a missing blob" means, as a check the fault tests run."""

from __future__ import annotations

from opk_sign.errors import NotFoundError
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.manifest import ImageManifest, parse_manifest


def dangling_referrers(client: RegistryClient, ref: str, subject: Descriptor) -> list[str]:
    """Problems of every referrer listed for ``subject`` (recursively): a listed manifest that
    is missing, or a manifest whose config or layer blob is missing. Empty when consistent."""
    problems: list[str] = []
    pending = [subject.digest]
    seen: set[str] = set()
    while pending:
        digest = pending.pop()
        for referrer in client.list_referrers(ref, digest):
            if referrer.digest in seen:
                continue
            seen.add(referrer.digest)
            try:
                data, media_type = client.get_manifest(ref, referrer.digest)
            except NotFoundError:
                problems.append(f"{referrer.digest}: manifest missing")
                continue
            manifest = parse_manifest(data, media_type)
            if isinstance(manifest, ImageManifest):
                problems += [
                    f"{referrer.digest}: blob {blob.digest} missing"
                    for blob in manifest.blobs()
                    if not client.blob_exists(ref, blob.digest)
                ]
            pending.append(referrer.digest)
    return problems
