"""The maintainer's side: build and update an opk-sign TUF repository with python-tuf's Metadata
API (``opk-sign trust repo …``).

The working directory is itself a consistent-snapshot repository, laid out as it is served::

    DIR/repository.json             settings: how long each role's metadata stays valid
    DIR/metadata/N.root.json        every root version (clients walk them to rotate root keys)
    DIR/metadata/N.targets.json     every targets version, N.snapshot.json likewise
    DIR/metadata/timestamp.json     the one mutable file: the entry point
    DIR/targets/<dirs>/<sha256>.<name>   target files, named by content

Every change writes new, versioned files (each to a temporary file, then renamed) and replaces
``timestamp.json`` last, so an interrupted command leaves the previous state intact and readers
never see a half-written one. Private keys live apart, in a keys directory (``*.pem``, PKCS#8,
mode 0600), and are matched to roles by key id.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import (  # type: ignore[attr-defined]  # re-exported, no __all__
    CryptoSigner,
    Signer,
)
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import (  # type: ignore[attr-defined]  # re-exported, no __all__
    Metadata,
    MetaFile,
    Root,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.repository import Repository  # type: ignore[attr-defined]  # re-exported

from opk_sign.errors import FormatError, TrustError, UsageError
from opk_sign.jose import parse_json_object
from opk_sign.tlog.checkpoint import TlogTrust
from opk_sign.trust.client import (
    TLOG_KEYS_TARGET,
    TSA_CERTS_TARGET,
    check_root,
    jwks_target,
    policy_target,
    write_atomic,
)
from opk_sign.trust.jwks_archive import JWKSArchive
from opk_sign.trust.mapping import MAPPING_TARGET, check_pattern
from opk_sign.trust.mapping import Mapping as ImageMapping

ROLES: Final = (Root.type, Targets.type, Snapshot.type, Timestamp.type)
DAY: Final = 24 * 3600
#: How long each role's metadata is valid after signing. The timestamp is short (a frozen
#: repository is noticed within days) and re-signed daily by the jwks-archive workflow; root and
#: targets are signed rarely, by people.
DEFAULT_EXPIRY: Final[Mapping[str, int]] = {
    Root.type: 365 * DAY,
    Targets.type: 90 * DAY,
    Snapshot.type: 14 * DAY,
    Timestamp.type: 3 * DAY,
}
SETTINGS_FILE: Final = "repository.json"
#: Roles that sign on every change and may hold their key on a CI runner.
ONLINE_ROLES: Final = (Snapshot.type, Timestamp.type)

_VERSIONED: Final = re.compile(r"^(\d+)\.(root|targets|snapshot)\.json$")
_HASHED: Final = re.compile(r"^[0-9a-f]{64}\.[^/]+$")
_SERIALIZER: Final = JSONSerializer(compact=False)


def parse_duration(text: str) -> int:
    """``90d``, ``12h``, ``30m`` or ``45s`` as seconds (at least one second)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": DAY}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise UsageError(f"invalid duration {text!r}: use e.g. 365d, 12h, 30m")
    return int(number) * units[unit]


def _private_key_file(path: Path, data: bytes) -> None:
    """Create a key file readable by its owner only; never overwrite one."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def load_signers(keys_dir: Path) -> dict[str, Signer]:
    """Every private key in ``keys_dir`` (``*.pem``), by TUF key id."""
    if not keys_dir.is_dir():
        raise UsageError(f"keys directory {keys_dir} does not exist")
    signers: dict[str, Signer] = {}
    for path in sorted(keys_dir.glob("*.pem")):
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise UsageError(
                f"private key {path} is accessible by other users (mode {mode & 0o777:o})",
                hint=f"chmod 600 {path}",
            )
        try:
            signer = CryptoSigner(load_pem_private_key(path.read_bytes(), password=None))
        except (ValueError, TypeError) as err:
            raise UsageError(
                f"{path} is not an unencrypted PKCS#8 PEM private key: {err}"
            ) from None
        signers[signer.public_key.keyid] = signer
    return signers


@dataclass(frozen=True)
class Settings:
    """``repository.json``: the validity period of each role, in seconds."""

    expiry: Mapping[str, int]

    @classmethod
    def load(cls, path: Path) -> Settings:
        try:
            doc = parse_json_object(path.read_bytes(), str(path))
        except FileNotFoundError:
            raise UsageError(
                f"{path.parent} is not an opk-sign trust repository (no {SETTINGS_FILE})",
                hint="create one with `opk-sign trust repo init DIR --keys-dir KEYDIR`",
            ) from None
        except FormatError as err:
            raise TrustError(err.message) from None
        expiry = doc.get("expiry")
        if not isinstance(expiry, dict) or not all(
            isinstance(expiry.get(role), int) and expiry[role] > 0 for role in ROLES
        ):
            raise TrustError(f"{path}: 'expiry' must give positive seconds for {list(ROLES)}")
        return cls({role: expiry[role] for role in ROLES})

    def to_json(self) -> bytes:
        return json.dumps({"expiry": dict(self.expiry)}, indent=2).encode() + b"\n"


class TrustRepository(Repository):
    """A repository directory and the keys to sign it; see the module docstring for the layout.

    ``clock`` gives the signing time (expiries are counted from it); tests move it.
    """

    def __init__(
        self,
        path: Path,
        keys_dir: Path | None = None,
        *,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.path = path
        self.keys_dir = keys_dir
        self.clock = clock or (lambda: datetime.now(UTC))
        self.settings = Settings.load(path / SETTINGS_FILE)
        self._signers: dict[str, Signer] | None = None
        #: Files written by the current change, kept until it is complete.
        self._pending: dict[Path, bytes] = {}

    @property
    def metadata_dir(self) -> Path:
        return self.path / "metadata"

    @property
    def targets_dir(self) -> Path:
        return self.path / "targets"

    # --- creating

    @classmethod
    def create(
        cls,
        path: Path,
        keys_dir: Path,
        *,
        threshold: int = 1,
        key_count: int | None = None,
        expiry: Mapping[str, int] | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> TrustRepository:
        """A new repository in ``path`` (absent or empty) with new ed25519 keys in ``keys_dir``.

        Root and targets (the offline roles) get ``key_count`` keys each and need ``threshold``
        signatures; snapshot and timestamp (online) one key each. The repository starts with an
        empty ``mapping.json``.
        """
        count = threshold if key_count is None else key_count
        if threshold < 1 or count < threshold:
            raise UsageError(
                f"threshold {threshold} with {count} keys: need 1 <= threshold <= keys"
            )
        if path.exists() and any(path.iterdir()):
            raise UsageError(f"{path} is not empty; a new repository needs an empty directory")
        if keys_dir.resolve().is_relative_to(path.resolve()):
            raise UsageError(
                f"the keys directory {keys_dir} is inside the repository {path}",
                hint="keep private keys apart from what is published",
            )
        periods = {**DEFAULT_EXPIRY, **(expiry or {})}
        unknown = sorted(set(periods) - set(ROLES))
        if unknown:
            raise UsageError(f"unknown role {unknown[0]!r}: roles are {', '.join(ROLES)}")
        keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        existing = sorted(p.name for p in keys_dir.glob("*.pem"))
        if existing:
            raise UsageError(
                f"keys directory {keys_dir} already holds keys ({', '.join(existing)})",
                hint="use a new directory: keys of another repository must not be mixed in",
            )
        new_keys: dict[str, list[CryptoSigner]] = {
            role: [
                CryptoSigner.generate_ed25519()
                for _ in range(count if role in (Root.type, Targets.type) else 1)
            ]
            for role in ROLES
        }
        # Built in a temporary directory and renamed into place: a failed init leaves nothing.
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        written: list[Path] = []
        try:
            for role, signers in new_keys.items():
                for signer in signers:
                    key_file = keys_dir / f"{role}-{signer.public_key.keyid[:12]}.pem"
                    _private_key_file(key_file, signer.private_bytes)
                    written.append(key_file)
            staging.chmod(0o755)
            write_atomic(staging / SETTINGS_FILE, Settings(periods).to_json())
            repo = cls(staging, keys_dir, clock=clock)
            repo._signers = {
                signer.public_key.keyid: signer for group in new_keys.values() for signer in group
            }
            with repo.edit_root() as root:
                for role, signers in new_keys.items():
                    for signer in signers:
                        root.add_key(signer.public_key, role)
                    offline = role in (Root.type, Targets.type)
                    root.roles[role].threshold = threshold if offline else 1
            repo._put_target(MAPPING_TARGET, ImageMapping().to_json())
            repo._commit()
            if path.exists():
                path.rmdir()  # empty, as checked above
            staging.rename(path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            for key_file in written:
                key_file.unlink(missing_ok=True)
            raise
        return cls(path, keys_dir, clock=clock)

    # --- the tuf.repository.Repository contract

    def open(self, role: str) -> Metadata[Any]:
        """The current metadata of ``role`` (a fresh version 0 if it has none yet)."""
        pending = self._pending_metadata(role)
        if pending is not None:
            return Metadata.from_bytes(pending)
        current = self._current_file(role)
        if current is None:
            signed = {
                Root.type: Root,
                Targets.type: Targets,
                Snapshot.type: Snapshot,
                Timestamp.type: Timestamp,
            }[role]()
            signed.version = 0
            return Metadata(signed)
        try:
            return Metadata.from_bytes(current.read_bytes())
        except tuf_errors.RepositoryError as err:
            raise TrustError(f"{current}: not TUF metadata ({err})") from None

    def close(self, role: str, md: Metadata[Any]) -> None:
        """Bump the version, set the expiry, sign with every key of the role, stage the file."""
        md.signed.version += 1
        md.signed.expires = self.clock() + timedelta(seconds=self.settings.expiry[role])
        md.signatures.clear()
        root = md.signed if role == Root.type else self.root()
        for keyid in root.roles[role].keyids:
            signer = self.signers().get(keyid)
            if signer is not None:
                md.sign(signer, append=True)
        self._check_threshold(role, root, md)
        data = md.to_bytes(_SERIALIZER)
        name = "timestamp.json" if role == Timestamp.type else f"{md.signed.version}.{role}.json"
        self._pending[self.metadata_dir / name] = data

    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        data = self._role_bytes(Targets.type)
        version = Metadata.from_bytes(data).signed.version
        return {f"{Targets.type}.json": MetaFile.from_data(version, data, ["sha256"])}

    @property
    def snapshot_info(self) -> MetaFile:
        data = self._role_bytes(Snapshot.type)
        version = Metadata.from_bytes(data).signed.version
        return MetaFile.from_data(version, data, ["sha256"])

    # --- keys

    def signers(self) -> dict[str, Signer]:
        if self._signers is None:
            if self.keys_dir is None:
                raise UsageError("this change needs the signing keys: give --keys-dir")
            self._signers = load_signers(self.keys_dir)
        return self._signers

    def require_keys(self, roles: Iterable[str]) -> None:
        """Refuse, before anything is written, a change whose roles cannot all be signed."""
        root = self.root()
        for role in roles:
            have = sum(1 for keyid in root.roles[role].keyids if keyid in self.signers())
            need = root.roles[role].threshold
            if have < need:
                raise UsageError(
                    f"{self.keys_dir} holds {have} of the {need} {role} keys needed to sign",
                    hint=f"put the {role} private key(s) (*.pem, mode 600) in the keys directory",
                )

    @staticmethod
    def _check_threshold(role: str, root: Root, md: Metadata[Any]) -> None:
        try:
            root.verify_delegate(role, md.signed_bytes, md.signatures)
        except tuf_errors.UnsignedMetadataError:
            raise UsageError(
                f"not enough {role} keys to reach the threshold ({root.roles[role].threshold})",
            ) from None

    # --- maintainer operations: each is one complete change

    def set_policy(self, name: str, document: Any) -> str:
        """Add or replace the policy ``name``; returns its target path."""
        from opk_sign.policy import policy_from_document

        policy_from_document(document)  # a policy that cannot be built must not be published
        target = policy_target(name)
        data = json.dumps(document, indent=2, ensure_ascii=False).encode() + b"\n"
        self._change_targets({target: data})
        return target

    def map(
        self,
        pattern: str,
        policy_name: str,
        rewrites: Iterable[tuple[str, str]] = (),
        *,
        force: bool = False,
        signed_in: tuple[str, ...] | None = None,
    ) -> ImageMapping:
        """Map ``pattern`` to the existing policy ``policy_name``; add mirror ``rewrites``;
        set the rule's signed repositories when ``signed_in`` is given (normalised names).

        A change that makes entries overlap (a name matching two rules with different policies,
        two rewrites with different targets, or a rewrite source and a rule) is refused unless
        ``force``: verifiers would apply the most specific one, which a reader of the file may
        not expect. Overlaps the mapping already had are not asked about again.
        """
        check_pattern(pattern)
        target = policy_target(policy_name)
        if target not in self.targets().targets:
            raise UsageError(
                f"the repository has no policy {policy_name!r}",
                hint=f"add it first: opk-sign trust repo set-policy DIR {policy_name} FILE",
            )
        before = self.mapping()
        mapping = before.with_rule(pattern, target, signed_in)
        for source, canonical in rewrites:
            mapping = mapping.with_rewrite(source, canonical)
        added = mapping.overlaps_added_since(before)
        if added and not force:
            raise UsageError(
                "refusing an ambiguous mapping: " + "; ".join(o.describe() for o in added),
                hint="give overlapping rules the same policy, or narrow or remove one of them"
                " (a rewrite's source must not match any rule's pattern); or pass --force to"
                " keep the overlap: verifiers apply the most specific entry",
            )
        self._change_targets({MAPPING_TARGET: mapping.to_json()})
        return mapping

    def set_min_version(self, version: str | None) -> ImageMapping:
        mapping = self.mapping().with_min_verifier_version(version)
        self._change_targets({MAPPING_TARGET: mapping.to_json()})
        return mapping

    def add_jwks(self, issuer: str, jwks: Mapping[str, Any], at: int) -> JWKSArchive:
        """Merge a snapshot of ``issuer``'s live JWKS, taken at ``at``, into its archive."""
        archive = self.jwks_archive(issuer) or JWKSArchive(issuer)
        updated = archive.observe(jwks, at)
        self._change_targets({jwks_target(issuer): updated.to_json()})
        return updated

    def set_tsa_certs(self, pem: bytes) -> int:
        """Publish the trusted TSA certificates (PEM); returns how many there are."""
        try:
            certificates = x509.load_pem_x509_certificates(pem)
        except ValueError as err:
            raise UsageError(f"not PEM certificates: {err}") from None
        self._change_targets({TSA_CERTS_TARGET: pem})
        return len(certificates)

    def set_tlog_keys(self, data: bytes) -> TlogTrust:
        """Publish the trusted transparency log and witness keys (checked as verifiers read
        them, docs/transparency.md); returns what they say."""
        trust = TlogTrust.parse(data, "transparency log keys")
        self._change_targets({TLOG_KEYS_TARGET: data})
        return trust

    def resign(self, roles: Iterable[str] = ONLINE_ROLES) -> list[str]:
        """New versions of ``roles`` with fresh expiries (and snapshot, timestamp after them)."""
        wanted = set(roles)
        unknown = sorted(wanted - set(ROLES))
        if unknown:
            raise UsageError(f"unknown role {unknown[0]!r}: roles are {', '.join(ROLES)}")
        if wanted & {Root.type, Targets.type, Snapshot.type}:
            wanted |= set(ONLINE_ROLES)
        if Snapshot.type in wanted:
            wanted.add(Timestamp.type)
        self.require_keys(wanted)
        for role in (Root.type, Targets.type):
            if role in wanted:
                with self.edit(role):
                    pass
        self._commit(snapshot=Snapshot.type in wanted)
        return [role for role in ROLES if role in wanted]

    # --- reading

    def mapping(self) -> ImageMapping:
        data = self.target_bytes(MAPPING_TARGET)
        return ImageMapping() if data is None else ImageMapping.from_json(data)

    def jwks_archive(self, issuer: str) -> JWKSArchive | None:
        data = self.target_bytes(jwks_target(issuer))
        if data is None:
            return None
        archive = JWKSArchive.from_json(data)
        if archive.issuer != issuer:
            raise UsageError(
                f"{jwks_target(issuer)} already holds the archive of {archive.issuer!r}; two"
                f" issuers map to the same file name"
            )
        return archive

    def target_bytes(self, path: str) -> bytes | None:
        info = self.targets().targets.get(path)
        if info is None:
            return None
        data = self._target_path(info).read_bytes()
        info.verify_length_and_hashes(data)
        return data

    def check(self) -> None:
        """Refuse (TrustError) a repository that clients would refuse: signatures, versions,
        hashes and expiry, as a client checks them."""
        root_files = self._versions(Root.type)
        if not root_files:
            raise TrustError(f"{self.metadata_dir} has no root metadata")
        check_root(root_files[0][1].read_bytes(), str(root_files[0][1]))
        trusted = Metadata[Root].from_bytes(root_files[0][1].read_bytes()).signed
        for _, path in root_files[1:]:
            data = path.read_bytes()
            new: Metadata[Root] = Metadata.from_bytes(data)
            trusted.verify_delegate(Root.type, new.signed_bytes, new.signatures)
            new.signed.verify_delegate(Root.type, new.signed_bytes, new.signatures)
            trusted = new.signed
        # Follow the timestamp as a client does: newer files may exist that no timestamp names
        # yet (an interrupted change), and are not part of the published state.
        now = self.clock()
        timestamp_bytes = self._role_bytes(Timestamp.type)
        timestamp = self._verified(trusted, Timestamp.type, timestamp_bytes, now)
        snapshot_version = timestamp.snapshot_meta.version
        snapshot_bytes = (self.metadata_dir / f"{snapshot_version}.snapshot.json").read_bytes()
        timestamp.snapshot_meta.verify_length_and_hashes(snapshot_bytes)
        snapshot = self._verified(trusted, Snapshot.type, snapshot_bytes, now)
        if snapshot.version != snapshot_version:
            raise TrustError(f"{snapshot_version}.snapshot.json holds version {snapshot.version}")
        targets_meta = snapshot.meta[f"{Targets.type}.json"]
        targets_bytes = (self.metadata_dir / f"{targets_meta.version}.targets.json").read_bytes()
        targets_meta.verify_length_and_hashes(targets_bytes)
        targets = self._verified(trusted, Targets.type, targets_bytes, now)
        for info in targets.targets.values():
            info.verify_length_and_hashes(self._target_path(info).read_bytes())

    def publish(self, outdir: Path) -> list[Path]:
        """Copy the repository to ``outdir`` for a static web server; returns the files written.

        The repository is checked first. Files already there with the same bytes are kept;
        ``timestamp.json`` is written last, so a server never offers a state whose files are
        not all in place.
        """
        try:
            self.check()
        except (tuf_errors.RepositoryError, FileNotFoundError, KeyError) as err:
            raise TrustError(
                f"{self.path} is not consistent, refusing to publish it: {err}",
                hint="run `opk-sign trust repo resign DIR` (after `… repo init` if it is empty)",
            ) from None
        # Only what clients fetch: never anything else a maintainer keeps in DIR.
        timestamp = self.metadata_dir / "timestamp.json"
        sources = sorted(
            [p for p in self.metadata_dir.iterdir() if _VERSIONED.match(p.name)]
            + [p for p in self.targets_dir.rglob("*") if p.is_file() and _HASHED.match(p.name)]
        )
        written = []
        for source in [*(p for p in sources if p != timestamp), timestamp]:
            destination = outdir / source.relative_to(self.path)
            data = source.read_bytes()
            if destination.is_file() and destination.read_bytes() == data:
                continue
            write_atomic(destination, data)
            written.append(destination)
        return written

    # --- internals

    def _change_targets(self, files: Mapping[str, bytes]) -> None:
        """One change: new target files, a new targets version, snapshot and timestamp."""
        self.require_keys((Targets.type, *ONLINE_ROLES))
        for path, data in files.items():
            self._put_target(path, data)
        self._commit()

    def _put_target(self, path: str, data: bytes) -> None:
        info = TargetFile.from_data(path, data, ["sha256"])
        self._pending[self._target_path(info)] = data
        with self.edit_targets() as targets:
            targets.targets[path] = info

    def _commit(self, *, snapshot: bool = True) -> None:
        """Sign a new snapshot (naming the newest targets) and timestamp for the staged changes,
        then write every staged file: versioned and content-addressed ones first,
        ``timestamp.json`` last."""
        if snapshot:
            with self.edit_snapshot() as signed_snapshot:
                signed_snapshot.meta = dict(self.targets_infos)
        with self.edit_timestamp() as timestamp:
            timestamp.snapshot_meta = self.snapshot_info
        pending, self._pending = self._pending, {}
        last = self.metadata_dir / "timestamp.json"
        for path in sorted(pending, key=lambda p: p == last):
            write_atomic(path, pending[path])

    def _pending_metadata(self, role: str) -> bytes | None:
        """The newest staged (not yet written) file of ``role``."""
        if role == Timestamp.type:
            return self._pending.get(self.metadata_dir / "timestamp.json")
        staged = [
            (int(m.group(1)), data)
            for path, data in self._pending.items()
            if (m := _VERSIONED.match(path.name)) and m.group(2) == role
        ]
        return max(staged)[1] if staged else None

    def _role_bytes(self, role: str) -> bytes:
        pending = self._pending_metadata(role)
        if pending is not None:
            return pending
        current = self._current_file(role)
        if current is None:
            raise TrustError(f"{self.metadata_dir} has no {role} metadata")
        return current.read_bytes()

    def _versions(self, role: str) -> list[tuple[int, Path]]:
        if not self.metadata_dir.is_dir():
            return []
        found = [
            (int(m.group(1)), path)
            for path in self.metadata_dir.iterdir()
            if (m := _VERSIONED.match(path.name)) and m.group(2) == role
        ]
        return sorted(found)

    def _current_file(self, role: str) -> Path | None:
        if role == Timestamp.type:
            path = self.metadata_dir / "timestamp.json"
            return path if path.is_file() else None
        versions = self._versions(role)
        return versions[-1][1] if versions else None

    def _target_path(self, info: TargetFile) -> Path:
        directory, _, name = info.path.rpartition("/")
        digest = info.hashes["sha256"]
        return self.targets_dir / directory / f"{digest}.{name}"

    @staticmethod
    def _verified(trusted: Root, role: str, data: bytes, now: datetime) -> Any:
        md: Metadata[Any] = Metadata.from_bytes(data)
        trusted.verify_delegate(role, md.signed_bytes, md.signatures)
        if md.signed.is_expired(now):
            raise tuf_errors.ExpiredMetadataError(
                f"{role} expired at {md.signed.expires:%Y-%m-%dT%H:%M:%SZ}"
            )
        return md.signed


__all__ = [
    "DEFAULT_EXPIRY",
    "ONLINE_ROLES",
    "ROLES",
    "TrustRepository",
    "load_signers",
    "parse_duration",
]
