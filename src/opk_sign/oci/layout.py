"""An OCI image layout on disk (image-spec ``image-layout.md``): ``oci-layout``, ``index.json``
and content-addressed ``blobs/<algorithm>/<hex>``.

Written with every blob's name its digest, so a reader checks each blob against its name before
using it: a layout is a file tree anyone may have edited. Reading is bounded (blob sizes, index
entries) and never follows a symlink out of the layout.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from opk_sign.errors import FormatError, UsageError
from opk_sign.jose import parse_json
from opk_sign.oci.descriptor import Descriptor
from opk_sign.oci.digest import digest_of, sha256_digest, split_digest, verify_digest

LAYOUT_FILE: Final = "oci-layout"
INDEX_FILE: Final = "index.json"
LAYOUT_VERSION: Final = "1.0.0"
INDEX_MEDIA_TYPE: Final = "application/vnd.oci.image.index.v1+json"
#: Entries ``index.json`` may list: an image's manifests and the referrers of each.
MAX_INDEX_ENTRIES: Final = 10_000
MAX_INDEX_BYTES: Final = 8 << 20


class LayoutWriter:
    """Writes blobs and, last, ``index.json`` into a new or empty directory."""

    def __init__(self, root: Path) -> None:
        if root.exists() and (not root.is_dir() or any(root.iterdir())):
            raise UsageError(
                f"{root} exists and is not an empty directory",
                hint="give a new directory: nothing is overwritten",
            )
        self.root = root
        (root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (root / LAYOUT_FILE).write_text(json.dumps({"imageLayoutVersion": LAYOUT_VERSION}) + "\n")

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` under its digest (checked against ``digest`` when given)."""
        if digest is not None:
            verify_digest(data, digest, "blob")
        digest = digest or sha256_digest(data)
        path = blob_path(self.root, digest)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)  # blobs/<algorithm>: sha512 is an OCI digest too
            temporary = path.with_name(path.name + ".partial")
            temporary.write_bytes(data)
            os.replace(temporary, path)
        return digest

    def write_index(
        self, manifests: Iterable[Descriptor], annotations: dict[str, str] | None = None
    ) -> None:
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [d.to_dict() for d in manifests],
        }
        if annotations:
            doc["annotations"] = annotations
        (self.root / INDEX_FILE).write_text(json.dumps(doc, indent=2) + "\n")


def blob_path(root: Path, digest: str) -> Path:
    algorithm, hexdigest = split_digest(digest)
    return root / "blobs" / algorithm / hexdigest


class LayoutReader:
    """Reads a layout's index and blobs, each blob verified against its digest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        marker = read_regular_file(root / LAYOUT_FILE, 4096, "oci-layout")
        try:  # the strict, depth-bounded parser: a kit is whoever wrote it
            parsed = parse_json(marker, "oci-layout")
        except FormatError:
            parsed = None
        version = parsed.get("imageLayoutVersion") if isinstance(parsed, dict) else None
        if version != LAYOUT_VERSION:
            raise FormatError(f"{root}: oci-layout is not an OCI image layout {LAYOUT_VERSION}")

    def index(self) -> list[Descriptor]:
        entries = self._index().get("manifests")
        if not isinstance(entries, list):
            raise FormatError(f"{self.root}: index.json has no manifests list")
        if len(entries) > MAX_INDEX_ENTRIES:
            raise FormatError(f"{self.root}: index.json lists more than {MAX_INDEX_ENTRIES}")
        return [Descriptor.from_dict(entry) for entry in entries]

    def annotations(self) -> dict[str, str]:
        """``index.json``'s own annotations."""
        found = self._index().get("annotations", {})
        if not isinstance(found, dict) or not all(isinstance(v, str) for v in found.values()):
            raise FormatError(f"{self.root}: index.json annotations must map to strings")
        return found

    def _index(self) -> dict[str, Any]:
        data = read_regular_file(self.root / INDEX_FILE, MAX_INDEX_BYTES, "index.json")
        try:
            doc: Any = parse_json(data, "index.json", max_bytes=MAX_INDEX_BYTES)
        except FormatError as err:
            raise FormatError(f"{self.root}: index.json is not JSON ({err.message})") from None
        if not isinstance(doc, dict):
            raise FormatError(f"{self.root}: index.json is not a JSON object")
        return doc

    def has(self, digest: str) -> bool:
        return blob_path(self.root, digest).is_file()

    def blob(self, digest: str, max_size: int) -> bytes:
        """The blob's bytes, verified against ``digest``; FormatError if missing or altered."""
        try:
            path = blob_path(self.root, digest)
        except UsageError:
            raise FormatError(f"{self.root}: {digest!r} is not a digest") from None
        data = read_regular_file(path, max_size, f"blob {digest}")
        if digest_of(data, split_digest(digest)[0]) != digest:
            raise FormatError(f"blob {digest} of {self.root} does not match its digest (altered)")
        return data


def read_regular_file(path: Path, max_size: int, what: str) -> bytes:
    """At most ``max_size`` bytes of a regular file, refused (FormatError) if it is anything
    else: a symlink is not followed, and a FIFO or device is never opened for reading (a FIFO
    would block forever). Checked on the open descriptor, so a file swapped in between is
    caught too."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise FormatError(f"{path}: {what} is not a regular file")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise FormatError(f"{path}: {what} is missing") from None
    except OSError as err:
        raise FormatError(f"cannot read {what} at {path}: {err.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise FormatError(f"{path}: {what} is not a regular file")
        data = handle.read(max_size + 1)
    if len(data) > max_size:
        raise FormatError(f"{what} at {path} is larger than {max_size} bytes")
    return data
