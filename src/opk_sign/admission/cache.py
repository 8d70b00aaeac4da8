"""The cache of verified digests: a second pull of an image costs no registry request.

An entry says "this digest, under this name, satisfied this policy with this trust data"; its key
is all four (:func:`cache_key`), so a new policy, a new version of the trust repository's targets
(a key revoked, a mapping rule changed) or another name never reuses it. Entries live
``ttl`` seconds and the cache holds at most ``max_entries`` (the oldest go first). Only what
verified is cached: a refusal is decided again next time.

Two layers: a bounded in-memory map (the service; a verifier process lives for one pull) in front
of a directory of one small JSON file per entry (shared by the verifier processes containerd
starts, written atomically). Whoever can write the directory decides what is allowed, so it is
created owner-only and refused when another user owns it or could write it. Pure: the standard
library and :mod:`opk_sign.errors` only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from opk_sign.errors import TrustError

#: One entry's file: a digest, a name, a few claims.
MAX_ENTRY_BYTES: Final = 16 * 1024
ENTRIES_DIR: Final = "verified"


def cache_key(*, digest: str, name: str, policy: str, trust_version: str) -> str:
    """The key of a verification: the digest, the canonical name the signature must bind, a
    fingerprint of the policy (its document, the rule, the issuer) and the trust data's version."""
    parts = [digest, name, policy, trust_version]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    key: str
    image: str
    verified_at: float
    expires_at: float
    identity: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "key": self.key,
                "image": self.image,
                "verifiedAt": self.verified_at,
                "expiresAt": self.expires_at,
                "identity": self.identity,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Entry | None:
        """The entry, or None for anything that is not one (a damaged file is a miss)."""
        try:
            doc = json.loads(data)
            entry = cls(
                str(doc["key"]),
                str(doc["image"]),
                float(doc["verifiedAt"]),
                float(doc["expiresAt"]),
                dict(doc.get("identity") or {}),
            )
        except (ValueError, KeyError, TypeError):
            return None
        return entry


def check_private(path: Path, what: str) -> None:
    """Refuse (TrustError) ``path`` when another user owns it or can write it."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as err:
        raise TrustError(f"cannot check the {what} {path}: {err.strerror or err}") from None
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid() or mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise TrustError(
            f"the {what} {path} is owned by uid {info.st_uid} with mode {mode:03o}: another "
            "user could write what it says was verified; refusing to use it",
            hint=f"chown {os.geteuid()} {path} && chmod 700 {path}, or remove it (it is "
            "recreated owner-only)",
        )


class VerifiedCache:
    """Verified digests: in memory (bounded) and, with ``directory``, on disk (bounded)."""

    def __init__(
        self,
        directory: Path | None,
        *,
        max_entries: int = 1024,
        ttl: float = 3600.0,
        clock: Any = time.time,
    ) -> None:
        self.directory = directory / ENTRIES_DIR if directory is not None else None
        self.max_entries = max_entries
        self.ttl = ttl
        self._clock = clock
        self._memory: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()
        if directory is not None:
            directory.parent.mkdir(parents=True, exist_ok=True)  # /var/lib/opk-sign, say
            for path in (directory, directory / ENTRIES_DIR):
                with contextlib.suppress(FileExistsError):
                    os.mkdir(path, 0o700)
                    os.chmod(path, 0o700)
                check_private(path, "verified-digest cache")

    def get(self, key: str) -> Entry | None:
        now = self._clock()
        with self._lock:
            entry = self._memory.get(key)
            if entry is not None:
                if entry.expires_at > now:
                    self._memory.move_to_end(key)
                    return entry
                del self._memory[key]
        if self.directory is None:
            return None
        path = self.directory / f"{key}.json"
        check_private(path, "verified-digest cache entry")
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError:
            return None
        entry = Entry.from_json(data) if len(data) <= MAX_ENTRY_BYTES else None
        if entry is None or entry.key != key or entry.expires_at <= now or entry.verified_at > now:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self._remember(entry)
        return entry

    def put(self, key: str, image: str, identity: dict[str, Any] | None = None) -> Entry:
        now = self._clock()
        entry = Entry(key, image, now, now + self.ttl, dict(identity or {}))
        self._remember(entry)
        if self.directory is not None:
            self._write(entry)
            self._prune()
        return entry

    def __len__(self) -> int:
        with self._lock:
            return len(self._memory)

    def _remember(self, entry: Entry) -> None:
        with self._lock:
            self._memory[entry.key] = entry
            self._memory.move_to_end(entry.key)
            while len(self._memory) > self.max_entries:
                self._memory.popitem(last=False)

    def _write(self, entry: Entry) -> None:
        assert self.directory is not None
        with contextlib.suppress(FileExistsError):  # removed since (by hand): made again
            os.mkdir(self.directory, 0o700)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".entry.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(entry.to_json())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.directory / f"{entry.key}.json")
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _prune(self) -> None:
        """Keep at most ``max_entries`` files: the oldest written go first."""
        assert self.directory is not None
        try:
            files = [(e.stat().st_mtime, e.path) for e in os.scandir(self.directory)]
        except OSError:
            return
        files = [item for item in files if item[1].endswith(".json")]
        if len(files) <= self.max_entries:
            return
        files.sort()
        for _, path in files[: len(files) - self.max_entries]:
            with contextlib.suppress(OSError):
                os.unlink(path)
