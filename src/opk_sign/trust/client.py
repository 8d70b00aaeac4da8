"""The TUF client: trust material (mapping, policies, JWKS archives, TSA certificates) from a TUF
repository, through python-tuf's ``ngclient``.

One :class:`TrustClient` per run refreshes the top-level metadata once (root → timestamp →
snapshot → targets, with python-tuf's rollback, freeze and mix-and-match checks) and keeps every
target it verified in a per-user cache, so a later run can work **offline** from that cache; the
offline client says so (:attr:`TrustClient.notice`) and still refuses expired metadata.

Layout of the trust directory (``$OPK_SIGN_TRUST_DIR``, else the user cache dir)::

    config.json                  {"metadataUrl": ..., "targetsUrl": ...}   (opk-sign trust init)
    root.json                    the trusted root installed by opk-sign trust init
    cache/<hash of metadata URL>/metadata/   python-tuf's verified metadata (root_history/, ...)
    cache/<hash of metadata URL>/targets/    verified target files
    cache/<hash of metadata URL>/anchor.sha256  the root the cache was verified under

Everything in it is created owner-only (directories 0700, files 0600) whatever the umask, and a
directory or file there that another user owns or could write is refused before it is trusted,
as ssh refuses a world-writable key: whoever can write the root, the configuration or the cache
decides what verifies.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import requests
from tuf.api import exceptions as tuf_errors
from tuf.api.metadata import (  # type: ignore[attr-defined]  # re-exported, no __all__
    Metadata,
    Root,
    Snapshot,
    Targets,
    Timestamp,
)
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from opk_sign import deadline
from opk_sign._version import __version__
from opk_sign.deadline import DeadlineExceeded
from opk_sign.errors import FormatError, TrustError, UsageError
from opk_sign.http import DEFAULT_HTTP, new_session
from opk_sign.jose import parse_json
from opk_sign.trust.jwks_archive import JWKSArchive
from opk_sign.trust.location import CONFIG_FILE, ROOT_FILE, TRUST_DIR_ENV, default_trust_dir
from opk_sign.trust.mapping import MAPPING_TARGET, Mapping
from opk_sign.urls import require_secure_url

if TYPE_CHECKING:
    from opk_sign.policy import AllOf

#: Optional target: PEM certificate chains of the timestamp authorities verifiers trust.
TSA_CERTS_TARGET: Final = "tsa/certs.pem"
#: Optional target: trusted transparency log and witness keys (docs/transparency.md).
TLOG_KEYS_TARGET: Final = "tlog/keys.txt"
#: Directory of the JWKS archive targets, one per issuer.
JWKS_TARGET_DIR: Final = "jwks"
#: Directory of the policy targets.
POLICY_TARGET_DIR: Final = "policies"
#: Largest target the client downloads; trust documents are a few KiB.
MAX_TARGET_BYTES: Final = 4 << 20

_ROOT_VERSION: Final = re.compile(r"^\d+\.root\.json$")


# --- target names shared by the client and the maintainer commands --------------------------------


def jwks_target(issuer: str) -> str:
    """The target path of ``issuer``'s JWKS archive: ``jwks/<host and path>.json``."""
    rest = issuer.split("://", 1)[-1]
    slug = re.sub(r"[^A-Za-z0-9.-]+", "_", rest).strip("._")
    if not slug:
        raise UsageError(f"issuer {issuer!r} has no host to name its JWKS archive after")
    return f"{JWKS_TARGET_DIR}/{slug}.json"


def policy_target(name: str) -> str:
    """The target path of the policy called ``name``: ``policies/<name>.json``."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,99}", name) or name.endswith(".json"):
        raise UsageError(
            f"policy name {name!r}: use lowercase letters, digits, '.', '_' and '-'",
            hint="e.g. official-images (stored as policies/official-images.json)",
        )
    return f"{POLICY_TARGET_DIR}/{name}.json"


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


# --- owner-only files ----------------------------------------------------------------------------

PRIVATE_DIR_MODE: Final = 0o700
PRIVATE_FILE_MODE: Final = 0o600


def make_private_dirs(path: Path, top: Path) -> None:
    """Create ``path`` and its missing parents from ``top`` down as 0700 directories.

    Directories above ``top`` are not the trust directory's to restrict (``~/.cache``). The
    umask filters mkdir's mode, hence the chmod after it; existing directories are left to
    :func:`check_private`.
    """
    top.parent.mkdir(parents=True, exist_ok=True)
    for directory in (top, *(top / part for part in _prefixes(path.relative_to(top)))):
        try:
            os.mkdir(directory, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue
        os.chmod(directory, PRIVATE_DIR_MODE)


def _prefixes(relative: Path) -> list[Path]:
    """``a/b/c`` as ``a``, ``a/b``, ``a/b/c``."""
    return [Path(*relative.parts[: n + 1]) for n in range(len(relative.parts))]


def tighten(tree: Path) -> None:
    """Make what python-tuf wrote under ``tree`` owner-only: it creates target files and
    ``root_history/`` with the umask's modes. Only called on a tree already checked by
    :func:`check_private_tree`, inside 0700 directories nobody else can enter."""
    for directory, subdirs, files in os.walk(tree):
        for name, mode in [(d, PRIVATE_DIR_MODE) for d in subdirs] + [
            (f, PRIVATE_FILE_MODE) for f in files
        ]:
            path = os.path.join(directory, name)
            if os.path.islink(path):
                continue  # root.json -> root_history/N.root.json: its target is walked too
            if stat.S_IMODE(os.lstat(path).st_mode) != mode:
                os.chmod(path, mode)
    if stat.S_IMODE(os.stat(tree).st_mode) != PRIVATE_DIR_MODE:
        os.chmod(tree, PRIVATE_DIR_MODE)


def check_private(path: Path) -> None:
    """Refuse (TrustError) a trust file or directory that another user owns or can write.

    Symbolic links are followed: what counts is the file that is read. A missing path is
    not refused here (the caller says what is missing).
    """
    try:
        info = path.stat()
    except FileNotFoundError:
        return
    except OSError as err:
        raise TrustError(f"cannot check the trust data {path}: {err.strerror or err}") from None
    if path.is_symlink():
        # python-tuf's metadata/root.json links into root_history/: name the file to fix.
        path = path.resolve()
    is_dir = stat.S_ISDIR(info.st_mode)
    what = "trust directory" if is_dir else "trust file"
    mode = stat.S_IMODE(info.st_mode)
    fix = f"chmod {PRIVATE_DIR_MODE if is_dir else PRIVATE_FILE_MODE:o} {shlex.quote(str(path))}"
    if info.st_uid != os.geteuid():
        raise TrustError(
            f"{what} {path} is owned by uid {info.st_uid}, not by this user (uid"
            f" {os.geteuid()}): whoever owns it decides what verifies; refusing to trust it",
            hint=f"chown {os.geteuid()} {shlex.quote(str(path))} && {fix} if its content is"
            " yours, else remove the trust directory and run `opk-sign trust init` again",
        )
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        writers = "other users" if mode & stat.S_IWOTH else "its group"
        raise TrustError(
            f"{what} {path} is writable by {writers} (mode {mode:03o}): anyone who can write it"
            " decides what verifies; refusing to trust it",
            hint=f"{fix} (opk-sign creates it owner-only), or remove the trust directory and"
            " run `opk-sign trust init` again if others may have changed it",
        )


def check_private_tree(tree: Path) -> None:
    """:func:`check_private` on ``tree`` and everything under it."""
    check_private(tree)
    if not tree.is_dir():
        return
    for directory, subdirs, files in os.walk(tree):
        for name in (*subdirs, *files):
            check_private(Path(directory, name))


# --- configuration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrustConfig:
    """A trust repository: where its metadata and targets are, and the root that anchors it."""

    metadata_url: str
    targets_url: str
    root: bytes = field(repr=False)

    @classmethod
    def for_url(cls, url: str, root: bytes) -> TrustConfig:
        """A repository published by ``opk-sign trust repo publish`` at ``url``."""
        base = url.rstrip("/")
        return cls(f"{base}/metadata/", f"{base}/targets/", root)

    def __post_init__(self) -> None:
        require_secure_url(self.metadata_url, "the trust metadata URL")
        require_secure_url(self.targets_url, "the trust targets URL")
        check_root(self.root)

    @property
    def cache_key(self) -> str:
        return hashlib.sha256(self.metadata_url.encode()).hexdigest()[:16]


def check_root(data: bytes, where: str = "root metadata") -> Metadata[Root]:
    """Parse root metadata and check it is signed by its own threshold of root keys."""
    try:
        root: Metadata[Root] = Metadata[Root].from_bytes(data)
        if not isinstance(root.signed, Root):
            raise TrustError(f"{where} is {root.signed.type} metadata, not root")
        root.signed.verify_delegate(Root.type, root.signed_bytes, root.signatures)
    except tuf_errors.UnsignedMetadataError as err:
        raise TrustError(f"{where} is not signed by its root keys: {err}") from None
    except tuf_errors.RepositoryError as err:
        raise TrustError(f"{where} is not TUF root metadata: {err}") from None
    return root


def install(config: TrustConfig, trust_dir: Path | None = None) -> Path:
    """Install ``config`` as the default trust repository (``opk-sign trust init``); returns the
    trust directory."""
    directory = trust_dir or default_trust_dir()
    document = {"metadataUrl": config.metadata_url, "targetsUrl": config.targets_url}
    make_private_dirs(directory, directory)
    check_private(directory)  # refused, not silently repaired: others could have written in it
    os.chmod(directory, PRIVATE_DIR_MODE)
    write_atomic(directory / ROOT_FILE, config.root, PRIVATE_FILE_MODE)
    config_data = json.dumps(document, indent=2).encode() + b"\n"
    write_atomic(directory / CONFIG_FILE, config_data, PRIVATE_FILE_MODE)
    return directory


def installed_config(trust_dir: Path | None = None) -> TrustConfig:
    """The repository ``opk-sign trust init`` installed, or TrustError saying how to install one."""
    directory = trust_dir or default_trust_dir()
    # Checked before anything is read: the root and URLs decide everything else.
    for path in (directory, directory / CONFIG_FILE, directory / ROOT_FILE):
        check_private(path)
    try:
        config = json.loads((directory / CONFIG_FILE).read_bytes())
        root = (directory / ROOT_FILE).read_bytes()
    except FileNotFoundError:
        raise TrustError(
            f"no trust repository is configured (nothing installed in {directory})",
            hint="run `opk-sign trust init --root ROOT.json --url URL` with the root metadata"
            " your registry operator publishes",
        ) from None
    except (OSError, ValueError) as err:
        raise TrustError(f"cannot read the trust configuration in {directory}: {err}") from None
    if not isinstance(config, dict) or not all(
        isinstance(config.get(k), str) for k in ("metadataUrl", "targetsUrl")
    ):
        raise TrustError(
            f"{directory / CONFIG_FILE} is damaged",
            hint="run `opk-sign trust init` again",
        )
    try:
        return TrustConfig(config["metadataUrl"], config["targetsUrl"], root)
    except UsageError as err:
        raise TrustError(err.message, hint=err.hint) from None


# --- fetching -------------------------------------------------------------------------------------


class SessionFetcher(FetcherInterface):
    """python-tuf's fetcher over opk-sign's one HTTP session (retries, timeouts, user agent).

    Plain HTTP is refused except on loopback, as everywhere in opk-sign. Each download is one
    exchange of a session from :func:`opk_sign.http.new_session`, bounded overall (connect to
    last byte: ``HTTPConfig.exchange_timeout``, within any ``deadline.within`` in force); running
    out of time is python-tuf's SlowRetrievalError, a TrustError naming the file for the caller.
    """

    def __init__(self, session: requests.Session) -> None:
        self._session = session

    def _fetch(self, url: str) -> Iterator[bytes]:
        try:
            require_secure_url(url, "trust repository URL")
        except UsageError as err:
            raise tuf_errors.DownloadError(err.message) from None
        try:
            with deadline.within(None, f"the trust repository download of {url}"):
                response = self._session.get(url, stream=True, timeout=DEFAULT_HTTP.timeout)
        except DeadlineExceeded as err:
            raise tuf_errors.SlowRetrievalError(err.message) from None
        except requests.Timeout as err:
            raise tuf_errors.SlowRetrievalError(f"{url}: {err}") from None
        except requests.RequestException as err:
            raise tuf_errors.DownloadError(f"could not fetch {url}: {err}") from None
        if response.status_code >= 400:
            response.close()
            raise tuf_errors.DownloadHTTPError(
                f"{url} answered HTTP {response.status_code}", response.status_code
            )
        if response.url != url:
            try:
                require_secure_url(response.url, "trust repository URL (after redirects)")
            except UsageError as err:
                response.close()
                raise tuf_errors.DownloadError(err.message) from None
        return self._chunks(response, url)

    @staticmethod
    def _chunks(response: requests.Response, url: str) -> Iterator[bytes]:
        try:
            # The response keeps the exchange's deadline: a trickled body ends on time.
            yield from response.iter_content(64 * 1024)
        except requests.RequestException as err:
            raise tuf_errors.DownloadError(f"reading {url} failed: {err}") from None
        except DeadlineExceeded as err:
            raise tuf_errors.SlowRetrievalError(err.message) from None
        finally:
            response.close()


class OfflineFetcher(FetcherInterface):
    """Network-free: answers from the cache what python-tuf asks before trusting its cache.

    The updater always asks for the next root version (answered: 404, none newer) and for
    ``timestamp.json`` (answered: the cached one, which python-tuf then checks for expiry as
    always). Anything else it asks for is not cached, and offline mode cannot get it.
    """

    def __init__(self, metadata_dir: Path) -> None:
        self._metadata_dir = metadata_dir

    def _fetch(self, url: str) -> Iterator[bytes]:
        name = url.rsplit("/", 1)[-1]
        if _ROOT_VERSION.match(name):
            raise tuf_errors.DownloadHTTPError("offline: no newer root", 404)
        cached = self._metadata_dir / name
        if name == f"{Timestamp.type}.json" and cached.is_file():
            return iter([cached.read_bytes()])
        raise tuf_errors.DownloadError(f"offline: {name} is not in the trust cache")


# --- the client -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleStatus:
    name: str
    version: int
    expires: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": self.name,
            "version": self.version,
            "expires": self.expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }


@dataclass(frozen=True)
class TrustStatus:
    """What ``opk-sign trust status`` shows."""

    metadata_url: str
    targets_url: str
    offline: bool
    notice: str | None
    roles: tuple[RoleStatus, ...]
    targets: tuple[str, ...]
    mapping: Mapping

    def to_dict(self) -> dict[str, Any]:
        return {
            "metadataUrl": self.metadata_url,
            "targetsUrl": self.targets_url,
            "offline": self.offline,
            "notice": self.notice,
            "roles": [r.to_dict() for r in self.roles],
            "targets": list(self.targets),
            "mapping": self.mapping.to_dict(),
            # How the client reads the mapping: rules in the order they are tried.
            "precedence": [rule.pattern for rule in self.mapping.rules_in_precedence()],
            "overlaps": [found.to_dict() for found in self.mapping.overlaps()],
        }


class TrustClient:
    """Verified trust material from one TUF repository; one instance per run.

    ``config`` defaults to the installed repository (``opk-sign trust init``). The first call
    that needs trust data refreshes the metadata once; later calls reuse it. With
    ``offline=True`` nothing is fetched: cached metadata and targets are used (and must not have
    expired), and :attr:`notice` says so. Every failure is a :class:`TrustError` (exit 14) naming
    what python-tuf refused.
    """

    def __init__(
        self,
        config: TrustConfig | None = None,
        *,
        trust_dir: Path | None = None,
        offline: bool = False,
        session: requests.Session | None = None,
    ) -> None:
        self.trust_dir = trust_dir or default_trust_dir()
        self.config = config or installed_config(self.trust_dir)
        self.offline = offline
        #: Set when the data is not fresh from the repository (offline mode), for the user.
        self.notice: str | None = None
        self._session = session
        cache = self.trust_dir / "cache" / self.config.cache_key
        self._metadata_dir = cache / "metadata"
        self._targets_dir = cache / "targets"
        self._updater: Updater | None = None
        self._mapping: Mapping | None = None
        self._failure: TrustError | None = None
        # Batch verification asks from many threads; python-tuf's updater is not thread-safe.
        self._lock = threading.RLock()

    # --- refresh

    def refresh(self) -> None:
        """Refresh the top-level metadata (once per instance) and, online, cache every target.

        Then check ``mapping.json`` and the minimum verifier version it names.
        """
        with self._lock:
            if self._failure is not None:
                # One refresh per run: a refused repository stays refused, without asking again.
                raise TrustError(self._failure.message, hint=self._failure.hint)
            if self._mapping is not None:
                return
            try:
                self._refresh()
            except TrustError as err:
                self._failure = err
                raise

    def _refresh(self) -> None:
        with self._tuf("refreshing trust metadata"):
            cache = self._metadata_dir.parent
            for directory in (self._metadata_dir, self._targets_dir):
                make_private_dirs(directory, self.trust_dir)
            # Before python-tuf reads anything cached: the trust dir, cache/, this repository's
            # cache and every file in it.
            check_private(self.trust_dir)
            check_private(cache.parent)
            check_private_tree(cache)
            with self._locked():
                try:
                    updater = self._refresh_locked()
                finally:
                    # Even after a refusal: what python-tuf wrote must not make the next run
                    # refuse the cache (a failure here is reported by the next check).
                    with contextlib.suppress(OSError):
                        tighten(cache)
        self._updater = updater
        if self.offline:
            timestamp = self._cached(Timestamp.type)
            self.notice = (
                f"offline: using cached trust data (timestamp version {timestamp.version},"
                f" expires {timestamp.expires:%Y-%m-%dT%H:%M:%SZ}); nothing was fetched"
            )
        mapping = self._load_mapping()
        mapping.check_verifier_version(__version__)
        self._mapping = mapping

    def _refresh_locked(self) -> Updater:
        self._drop_cache_of_other_root()
        updater = Updater(
            str(self._metadata_dir),
            self.config.metadata_url,
            str(self._targets_dir),
            self.config.targets_url,
            fetcher=self._fetcher(),
            bootstrap=self.config.root,
        )
        try:
            updater.refresh()
        except tuf_errors.DownloadError:
            if self.offline:
                self._raise_if_cache_expired()
            raise
        if not self.offline:
            # Every verified target lands in the cache now: a later offline run has them.
            for path in self._top_level_targets():
                self._fetch_target(updater, path)
        return updater

    # --- targets

    def target(self, path: str) -> bytes | None:
        """The verified bytes of target ``path``, or None if the repository has no such target."""
        self.refresh()
        assert self._updater is not None
        with self._lock, self._tuf(f"getting {path}"):
            return self._fetch_target(self._updater, path)

    def mapping(self) -> Mapping:
        """``mapping.json``: image-name patterns to policy targets."""
        self.refresh()
        assert self._mapping is not None
        return self._mapping

    def policy_document(self, target_path: str) -> Any:
        """The parsed policy document at ``target_path`` (a mapping of policy fields)."""
        data = self.target(target_path)
        if data is None:
            raise TrustError(
                f"the trust repository has no policy {target_path!r}",
                hint="mapping.json names a policy that was never added; tell the repository"
                " maintainer",
            )
        try:
            return parse_json(data, f"policy {target_path}")
        except FormatError as err:
            raise TrustError(err.message) from None

    def policy(self, target_path: str) -> AllOf:
        """The identity policy at ``target_path``, built by
        :func:`opk_sign.policy.policy_from_document`."""
        from opk_sign.policy import policy_from_document

        document = self.policy_document(target_path)
        try:
            return policy_from_document(document)
        except UsageError as err:
            raise TrustError(f"policy {target_path}: {err.message}", hint=err.hint) from None

    def jwks_archive(self, issuer: str) -> JWKSArchive | None:
        """``issuer``'s JWKS archive, or None if the repository keeps none for it."""
        path = jwks_target(issuer)
        data = self.target(path)
        if data is None:
            return None
        archive = JWKSArchive.from_json(data)
        if archive.issuer != issuer:
            raise TrustError(f"the JWKS archive {path} is for {archive.issuer!r}, not {issuer!r}")
        return archive

    def tsa_certs(self) -> bytes | None:
        """PEM certificates of the trusted timestamp authorities, if the repository has them."""
        return self.target(TSA_CERTS_TARGET)

    def status(self) -> TrustStatus:
        """Versions and expiries of the trusted metadata, targets and the mapping."""
        self.refresh()
        roles = []
        for role in (Root.type, Targets.type, Snapshot.type, Timestamp.type):
            signed = self._cached(role)
            roles.append(RoleStatus(role, signed.version, signed.expires))
        return TrustStatus(
            self.config.metadata_url,
            self.config.targets_url,
            self.offline,
            self.notice,
            tuple(roles),
            tuple(sorted(self._top_level_targets())),
            self.mapping(),
        )

    def content_id(self) -> str:
        """What identifies the trust data decided with: SHA-256 over the repository's metadata
        URL and the trusted root.json and targets.json (after :meth:`refresh`). Two repositories
        with the same version numbers (any two fresh ones) differ here; so does one whose
        targets were re-signed with other content at the same version."""
        self.refresh()
        digest = hashlib.sha256(self.config.metadata_url.encode() + b"\n")
        for role in (Root.type, Targets.type):
            with self._tuf(f"reading the cached {role}.json"):
                data = (self._metadata_dir / f"{role}.json").read_bytes()
            digest.update(hashlib.sha256(data).hexdigest().encode() + b"\n")
        return digest.hexdigest()

    # --- internals

    def _drop_cache_of_other_root(self) -> None:
        """A cache verified under another trust root (``trust init`` with a new root for the
        same URL) is not evidence of anything under this one: start it afresh."""
        marker = self._metadata_dir.parent / "anchor.sha256"
        anchor = hashlib.sha256(self.config.root).hexdigest()
        if marker.is_file() and marker.read_text().strip() == anchor:
            return
        for directory in (self._metadata_dir, self._targets_dir):
            for entry in directory.iterdir():
                if entry.name == ".lock":
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        write_atomic(marker, anchor.encode() + b"\n", PRIVATE_FILE_MODE)

    def _raise_if_cache_expired(self) -> None:
        # Offline, python-tuf's refusal of an expired timestamp surfaces as "cannot download a
        # fresh snapshot"; name the real reason.
        try:
            timestamp = self._cached(Timestamp.type)
        except (OSError, tuf_errors.RepositoryError):
            return
        if timestamp.is_expired():
            raise tuf_errors.ExpiredMetadataError(
                f"timestamp.json is expired (the cached copy, since"
                f" {timestamp.expires:%Y-%m-%dT%H:%M:%SZ})"
            )

    def _fetcher(self) -> FetcherInterface:
        if self.offline:
            return OfflineFetcher(self._metadata_dir)
        if self._session is None:
            self._session = new_session()
        return SessionFetcher(self._session)

    def _fetch_target(self, updater: Updater, path: str) -> bytes | None:
        info = updater.get_targetinfo(path)
        if info is None:
            return None
        if info.length > MAX_TARGET_BYTES:
            raise TrustError(f"target {path} is {info.length} bytes, more than {MAX_TARGET_BYTES}")
        cached = updater.find_cached_target(info)
        if cached is None:
            if self.offline:
                raise TrustError(
                    f"offline: target {path} is not in the trust cache",
                    hint="run once online to fill the cache",
                )
            cached = updater.download_target(info)
            tighten(self._targets_dir)  # python-tuf writes it with the umask's mode
        return Path(cached).read_bytes()

    def _top_level_targets(self) -> list[str]:
        return list(self._cached(Targets.type).targets)

    def _cached(self, role: str) -> Any:
        # Only called after refresh(): the cached files are the ones python-tuf just verified.
        return Metadata.from_bytes((self._metadata_dir / f"{role}.json").read_bytes()).signed

    def _load_mapping(self) -> Mapping:
        assert self._updater is not None
        with self._tuf(f"getting {MAPPING_TARGET}"):
            data = self._fetch_target(self._updater, MAPPING_TARGET)
        if data is None:
            raise TrustError(
                f"the trust repository at {self.config.metadata_url} has no {MAPPING_TARGET}",
                hint="it is not an opk-sign trust repository, or was not initialised with"
                " `opk-sign trust repo init`",
            )
        return Mapping.from_json(data)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # python-tuf supports one updater per cache directory at a time; runs may overlap.
        fd = os.open(self._metadata_dir / ".lock", os.O_WRONLY | os.O_CREAT, PRIVATE_FILE_MODE)
        os.fchmod(fd, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _tuf(self, doing: str) -> Iterator[None]:
        """Turn python-tuf's refusals into TrustErrors that name what was refused."""
        where = self.config.metadata_url
        try:
            yield
        except TrustError:
            raise
        except tuf_errors.ExpiredMetadataError as err:
            raise TrustError(
                f"{doing}: python-tuf refused expired metadata ({err}) from {where}",
                hint="the repository is no longer maintained or is being frozen on an old state;"
                + (" go online to refresh" if self.offline else " tell its maintainer"),
            ) from None
        except tuf_errors.BadVersionNumberError as err:
            raise TrustError(
                f"{doing}: python-tuf refused a rollback to older metadata ({err}) from {where}",
                hint="the server offers older trust data than this machine has already seen;"
                " someone may be replaying an old repository state",
            ) from None
        except (
            tuf_errors.LengthOrHashMismatchError,
            tuf_errors.DownloadLengthMismatchError,
        ) as err:
            raise TrustError(
                f"{doing}: python-tuf refused a file whose length or hash does not match the"
                f" signed metadata ({err}) from {where}",
                hint="files of different repository states are mixed (mix-and-match) or were"
                " tampered with",
            ) from None
        except tuf_errors.UnsignedMetadataError as err:
            raise TrustError(
                f"{doing}: python-tuf refused metadata without enough valid signatures ({err})"
                f" from {where}",
            ) from None
        except tuf_errors.RepositoryError as err:
            raise TrustError(
                f"{doing}: python-tuf refused the repository's metadata ({err}) from {where}"
            ) from None
        except tuf_errors.DownloadHTTPError as err:
            raise TrustError(f"{doing}: {err}", hint=_reach_hint(self.offline)) from None
        except tuf_errors.DownloadError as err:
            cause = str(err) or (str(err.__cause__) if err.__cause__ else type(err).__name__)
            raise TrustError(
                f"{doing}: {cause}",
                hint=_reach_hint(self.offline),
            ) from None
        except OSError as err:
            raise TrustError(f"{doing}: trust cache {self.trust_dir}: {err}") from None


def _reach_hint(offline: bool) -> str:
    if offline:
        return "offline mode uses only cached trust data: run once online first"
    return "check the trust repository URL and the network, or use offline mode with a cache"


__all__ = [
    "JWKS_TARGET_DIR",
    "POLICY_TARGET_DIR",
    "TLOG_KEYS_TARGET",
    "TRUST_DIR_ENV",
    "TSA_CERTS_TARGET",
    "RoleStatus",
    "SessionFetcher",
    "TrustClient",
    "TrustConfig",
    "TrustStatus",
    "check_private",
    "check_private_tree",
    "check_root",
    "default_trust_dir",
    "install",
    "installed_config",
    "jwks_target",
    "make_private_dirs",
    "policy_target",
    "write_atomic",
]
