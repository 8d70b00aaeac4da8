"""The decision engine of the containerd verifier and the admission service.

For each image: the trust repository's mapping names the policy (verification by default); an
unmapped name is allowed or refused as the settings say; a mapped one is decided from the cache of
verified digests when it holds the digest under this policy and trust version, else verified
(the index and every platform manifest) against the registry, with the node's credentials.

Trust data (docs/adr/0010-verification-at-pull-time.md): refreshed online at most every
``refresh_interval`` seconds, within ``trust_timeout``; otherwise, and whenever the repository
cannot be reached in time, the cached TUF metadata decides while it has not expired. Expired
cached metadata refuses every mapped name, saying so (fail closed); the mapping last seen still
tells mapped names from unmapped ones. Everything runs under one deadline (``timeout``), below
containerd's 10 s, so the answer is always the verifier's own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from opk_sign import deadline
from opk_sign.admission.cache import VerifiedCache, cache_key, check_private
from opk_sign.admission.decision import Decision, one_line
from opk_sign.admission.settings import Settings
from opk_sign.errors import (
    EXIT_TRUST,
    EXIT_USAGE,
    OpkSignError,
    TrustError,
    UsageError,
)
from opk_sign.http import DEFAULT_HTTP, HTTPConfig
from opk_sign.issuer import default_issuer
from opk_sign.oci.reference import Reference
from opk_sign.trust.location import CONFIG_FILE, ROOT_FILE, TRUST_DIR_ENV, default_trust_dir
from opk_sign.trust.mapping import Mapping as TrustMapping

if TYPE_CHECKING:
    from opk_sign.oci.client import RegistryClient
    from opk_sign.trust.client import TrustClient
    from opk_sign.verify.options import OptionsFor, VerifyOptions

#: The trust state the verifier keeps next to its cache: when the trust data was last refreshed
#: online, and the mapping then (to tell mapped names once the TUF metadata has expired).
STATE_FILE: Final = "trust-state.json"
#: After trust data could not be loaded, the failure is the answer for this long (a service
#: deciding a hundred keys asks the repository once, not a hundred times).
RETRY_TRUST_AFTER: Final = 10.0
MAX_STATE_BYTES: Final = 4 << 20
#: The installed trust configuration and root are small; more is not what trust init wrote.
MAX_ANCHOR_BYTES: Final = 1 << 20


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(frozen=True)
class _Trust:
    """Trust data ready to decide with."""

    client: TrustClient
    mapping: TrustMapping
    version: str
    choose: OptionsFor
    loaded_at: float
    online: bool
    #: When the first of the trusted metadata expires (epoch seconds).
    expires: float


class _TrustUnavailable(Exception):
    def __init__(self, error: OpkSignError, mapping: TrustMapping | None) -> None:
        super().__init__(error.message)
        self.error = error
        self.mapping = mapping


class Engine:
    """Decides images; thread safe (the service decides many at once)."""

    def __init__(
        self,
        settings: Settings,
        *,
        environ: Mapping[str, str] | None = None,
        notice: Callable[[str], None] = _stderr,
    ) -> None:
        env = os.environ if environ is None else environ
        self.settings = settings
        self.notice = notice
        configured = env.get(TRUST_DIR_ENV)
        self.trust_dir = (
            Path(configured)
            if configured
            else settings.trust_dir
            if settings.trust_dir is not None
            else default_trust_dir()
        )
        self.cache = VerifiedCache(
            settings.cache_dir, max_entries=settings.cache_entries, ttl=settings.cache_ttl
        )
        self.http: HTTPConfig = replace(DEFAULT_HTTP, exchange_timeout=settings.timeout)
        self._environ = env
        self._trust: _Trust | None = None
        self._failure: tuple[float, _TrustUnavailable] | None = None
        self._lock = threading.Lock()
        self._client: RegistryClient | None = None

    # --- the registry client

    @property
    def client(self) -> RegistryClient:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> RegistryClient:
        from opk_sign.oci.client import RegistryClient
        from opk_sign.oci.dockerconfig import DockerConfig
        from opk_sign.oci.keychain import Keychain
        from opk_sign.urls import InsecureRegistries

        credentials = self.settings.registry_credentials
        if credentials is not None:
            try:
                with credentials.open("rb") as handle:
                    data = handle.read(1 << 20)
            except OSError as err:
                raise UsageError(
                    f"cannot read registry-credentials {credentials}: {err.strerror}"
                ) from None
            docker = DockerConfig.parse(
                data, path=credentials, helper_path=self._environ.get("PATH")
            )
        else:
            docker = DockerConfig.load(environ=self._environ)
        insecure = InsecureRegistries.parse(
            self.settings.insecure_registries, "insecure-registries"
        )
        return RegistryClient(
            Keychain.default(docker_config=docker),
            self.http,
            insecure_registries=insecure,
            notice=self.notice,
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    # --- trust data

    def _state_path(self) -> Path | None:
        if self.settings.cache_dir is None:
            return None
        return self.settings.cache_dir / STATE_FILE

    def _read_state(self) -> dict[str, Any]:
        path = self._state_path()
        if path is None:
            return {}
        check_private(path, "trust state")
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_STATE_BYTES + 1)
            state = json.loads(data) if len(data) <= MAX_STATE_BYTES else {}
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _write_state(self, state: dict[str, Any]) -> None:
        path = self._state_path()
        if path is None:
            return
        from opk_sign.trust.client import write_atomic

        with contextlib.suppress(OSError):
            write_atomic(path, json.dumps(state).encode(), 0o600)

    def _anchor(self) -> str | None:
        """SHA-256 of the installed trust configuration and root (``opk-sign trust init``):
        the trust state holds the one it was written under, so that re-initialising the node
        with another repository voids the fast path at once. None when none is installed."""
        digest = hashlib.sha256()
        for name in (CONFIG_FILE, ROOT_FILE):
            try:
                with (self.trust_dir / name).open("rb") as handle:
                    data = handle.read(MAX_ANCHOR_BYTES + 1)
            except OSError:
                return None
            if len(data) > MAX_ANCHOR_BYTES:
                return None
            digest.update(hashlib.sha256(data).hexdigest().encode() + b"\n")
        return digest.hexdigest()

    def _stored_mapping(self, state: dict[str, Any] | None = None) -> TrustMapping | None:
        document = (self._read_state() if state is None else state).get("mapping")
        if not isinstance(document, dict):
            return None
        try:
            return TrustMapping.from_dict(document)
        except OpkSignError:
            return None

    def trust(self) -> _Trust:
        """Trust data to decide with (refreshed when due), or _TrustUnavailable."""
        now = time.time()
        with self._lock:
            current = self._trust
            if (
                current is not None
                and now - current.loaded_at < self.settings.refresh_interval
                and now < current.expires  # a long-running service outlives its metadata
            ):
                return current
            if self._failure is not None and 0 <= now - self._failure[0] < RETRY_TRUST_AFTER:
                raise self._failure[1]
            try:
                trust = self._load_trust(now)
            except _TrustUnavailable as unavailable:
                self._trust, self._failure = None, (now, unavailable)
                raise
            self._trust, self._failure = trust, None
            return trust

    def _load_trust(self, now: float) -> _Trust:
        from opk_sign.trust.client import TrustClient

        state = self._read_state()
        refreshed = state.get("refreshedAt")
        fresh = (
            isinstance(refreshed, int | float)
            and 0 <= now - refreshed < self.settings.refresh_interval
        )
        # Recently refreshed: the cache first, the repository only if the cache will not do (it
        # expired since). Due: the repository first, within its deadline, then the cache.
        errors: dict[bool, OpkSignError] = {}
        for offline in (True, False) if fresh else (False, True):
            try:
                if offline:
                    trust = self._trust_from(TrustClient, offline=True, now=now)
                else:
                    with deadline.within(self.settings.trust_timeout, "refreshing the trust data"):
                        trust = self._trust_from(TrustClient, offline=False, now=now)
            except OpkSignError as err:
                errors[offline] = err
                if not offline:
                    self.notice(
                        "notice: the trust repository could not be refreshed "
                        f"({one_line(err.message, 300)}); the cached trust data decides"
                    )
                continue
            # The rules' fingerprints stay only for exactly this trust data: the version names
            # the repository's content (_trust_from), and the mapping must be the one stored.
            anchor = self._anchor()
            known = (
                state.get("trustVersion") == trust.version
                and state.get("mapping") == trust.mapping.to_dict()
                and state.get("anchor") == anchor
            )
            if not offline or not known:
                self._write_state(
                    {
                        "refreshedAt": now if not offline else state.get("refreshedAt", 0),
                        "mapping": trust.mapping.to_dict(),
                        "trustVersion": trust.version,
                        "anchor": anchor,
                        "expires": trust.expires,
                        # Each rule's policy fingerprint, once a pull has computed it: a later
                        # pull of a cached digest then needs no TUF at all (the fast path).
                        "rules": state.get("rules", {}) if known else {},
                    }
                )
            return trust
        # Why the cache would not do (expired, refused) says most; else why the repository failed.
        cached = errors.get(True)
        reason = cached if isinstance(cached, TrustError) else errors.get(False) or cached
        assert reason is not None
        raise _TrustUnavailable(reason, self._stored_mapping())

    def _trust_from(self, cls: type[TrustClient], *, offline: bool, now: float) -> _Trust:
        from opk_sign.http import new_session
        from opk_sign.verify.options import VerifyOptions, build_verify_options

        client = cls(trust_dir=self.trust_dir, offline=offline, session=new_session(self.http))
        client.refresh()
        status = client.status()
        versions = {role.name: role.version for role in status.roles}
        # The numbers alone do not identify the trust data (any two fresh repositories are
        # "root 1, targets 1"): the content's hash does, in every cache key and trust state.
        version = (
            f"root {versions.get('root')}, targets {versions.get('targets')}, "
            f"sha256 {client.content_id()}"
        )
        expires = min(role.expires.timestamp() for role in status.roles)
        options = build_verify_options(
            issuer=self.settings.issuer,
            trust_client=client,
            notice=self.notice,
            http=self.http,
        )
        assert not isinstance(options, VerifyOptions)  # no policy given: the mapping decides
        return _Trust(client, client.mapping(), version, options, now, not offline, expires)

    # --- deciding

    def decide(self, name: str, digest: str | None = None) -> Decision:
        """Allowed or refused, with the reason; never raises for what an image or the network
        does (an error is a refusal saying so)."""
        started = time.monotonic()
        try:
            decision = self._decide(name, digest)
        except OpkSignError as err:
            decision = Decision(
                image=name,
                allowed=False,
                outcome=_label(err),
                exit_code=err.exit_code,
                required="a decision",
                found=err.diagnostics(),
                digest=digest,
            )
        return replace(decision, seconds=time.monotonic() - started)

    def _decide(self, name: str, digest: str | None) -> Decision:
        reference = Reference.parse(name)
        if digest is not None and reference.digest is not None and reference.digest != digest:
            raise UsageError(
                f"{name} names {reference.digest}, not the digest {digest} asked about"
            )
        digest = digest or reference.digest
        if digest is not None and self._trust is None:
            fast = self._from_state(name, reference, digest)
            if fast is not None:
                return fast
        try:
            trust = self.trust()
        except _TrustUnavailable as unavailable:
            return self._without_trust(name, digest, unavailable)
        rule = trust.mapping.lookup(reference)
        if rule is None:
            return self._unmapped(name, digest, trust.version)
        options = trust.choose(name)
        required = (
            f"a signature satisfying {options.policy.describe()} (trust repository policy "
            f"{rule.policy}, mapping rule {rule.pattern})"
        )
        fingerprint = self._fingerprint(trust, rule.policy, options)
        self._remember_rule(trust.version, rule.pattern, fingerprint, required)
        if digest is None:
            digest = self.client.resolve(reference).digest  # a tag: one HEAD, then the cache
        key = cache_key(
            digest=digest, name=rule.name, policy=fingerprint, trust_version=trust.version
        )
        image = f"{reference.name}@{digest}"
        cached = self.cache.get(key)
        if cached is not None:
            return Decision(
                image=name,
                allowed=True,
                outcome="verified",
                exit_code=0,
                required=required,
                found=f"verified (cached since {_iso(cached.verified_at)})",
                digest=digest,
                rule=rule.pattern,
                cache="hit",
                trust_version=trust.version,
                identity=cached.identity,
            )
        from opk_sign.verify.image import verify_image

        result = verify_image(self.client, image, options)
        allowed = result.verified
        if allowed:
            try:
                self.cache.put(key, image, result.identity)
            except OSError as err:  # the decision stands; the next pull verifies again
                self.notice(f"warning: cannot write the verified-digest cache: {err}")
        found = result.message
        if allowed and result.identity:
            who = ", ".join(
                f"{claim} {result.identity[claim]}"
                for claim in ("repository", "job_workflow_ref")
                if claim in result.identity
            )
            found = f"{found}, signed by {who}" if who else found
        return Decision(
            image=name,
            allowed=allowed,
            outcome=result.outcome.label,
            exit_code=result.exit_code,
            required=required,
            found=found,
            digest=digest,
            rule=rule.pattern,
            cache="miss" if allowed else None,
            trust_version=trust.version,
            identity=result.identity,
        )

    def _from_state(self, name: str, reference: Reference, digest: str) -> Decision | None:
        """The fast path of a verifier process (containerd starts one per pull): a digest in the
        cache, decided from the trust state alone, without loading TUF, while that state is
        what the TUF client would use anyway (refreshed less than ``refresh_interval`` ago, no
        metadata expired). None: take the full path."""
        now = time.time()
        state = self._read_state()
        refreshed, expires = state.get("refreshedAt"), state.get("expires")
        version, rules = state.get("trustVersion"), state.get("rules")
        anchor = state.get("anchor")
        if not (
            isinstance(anchor, str)
            and anchor == self._anchor()  # the trust installed now is the one the state is of
            and isinstance(refreshed, int | float)
            and isinstance(expires, int | float)
            and isinstance(version, str)
            and isinstance(rules, dict)
            and 0 <= now - refreshed < self.settings.refresh_interval
            and now < expires
        ):
            return None
        mapping = self._stored_mapping(state)
        rule = mapping.lookup(reference) if mapping is not None else None
        if rule is None:
            return None  # unmapped names take the full path: the refusal text names the version
        known = rules.get(rule.pattern)
        if not (
            isinstance(known, dict)
            and isinstance(known.get("fingerprint"), str)
            and isinstance(known.get("required"), str)
            # Computed under these settings: the settings file is read on every pull, and a
            # changed issuer must not meet digests verified under the old one (red team).
            and known.get("issuer") == self._issuer()
        ):
            return None
        key = cache_key(
            digest=digest, name=rule.name, policy=known["fingerprint"], trust_version=version
        )
        cached = self.cache.get(key)
        if cached is None:
            return None
        return Decision(
            image=name,
            allowed=True,
            outcome="verified",
            exit_code=0,
            required=known["required"],
            found=f"verified (cached since {_iso(cached.verified_at)})",
            digest=digest,
            rule=rule.pattern,
            cache="hit",
            trust_version=version,
            identity=cached.identity,
        )

    def _remember_rule(self, version: str, pattern: str, fingerprint: str, required: str) -> None:
        state = self._read_state()
        if state.get("trustVersion") != version:
            return
        rules = state.get("rules")
        rules = dict(rules) if isinstance(rules, dict) else {}
        entry = {"fingerprint": fingerprint, "required": required, "issuer": self._issuer()}
        if rules.get(pattern) == entry:
            return
        rules[pattern] = entry
        self._write_state({**state, "rules": rules})

    def _fingerprint(self, trust: _Trust, policy_target: str, options: VerifyOptions) -> str:
        document = trust.client.target(policy_target) or b""
        parts = [
            policy_target,
            hashlib.sha256(document).hexdigest(),
            self._issuer(),
            ",".join(options.signed_repositories),
            # What the rule adds to the policy document (transparency: required ...).
            f"require-tlog {options.require_tlog}",
            f"source {options.source!r}",
        ]
        return "\n".join(parts)

    def _issuer(self) -> str:
        return self.settings.issuer or default_issuer()

    def _unmapped(self, name: str, digest: str | None, version: str | None) -> Decision:
        allowed = self.settings.unmapped == "allow"
        return Decision(
            image=name,
            allowed=allowed,
            outcome="unmapped",
            exit_code=EXIT_USAGE,
            required=(
                "nothing: the trust repository's mapping does not cover the name "
                f"(unmapped = {self.settings.unmapped})"
            ),
            found="not verified",
            digest=digest,
            trust_version=version,
        )

    def _without_trust(
        self, name: str, digest: str | None, unavailable: _TrustUnavailable
    ) -> Decision:
        error = unavailable.error
        mapping = unavailable.mapping
        if mapping is not None and mapping.lookup(name) is None:
            return self._unmapped(name, digest, None)
        required = (
            "a signature satisfying the trust repository's policy for the name"
            if mapping is not None
            else "trust data to tell whether the name is mapped"
        )
        return Decision(
            image=name,
            allowed=False,
            outcome="trust-error",
            exit_code=EXIT_TRUST,
            required=required,
            found=(
                (
                    "no usable trust data, so mapped names are refused (fail closed): "
                    if mapping is not None
                    else "no usable trust data and no mapping seen before, so every name is "
                    "refused (fail closed): "
                )
                + error.diagnostics()
            ),
            digest=digest,
            rule=(r.pattern if mapping is not None and (r := mapping.lookup(name)) else None),
        )

    # --- audit

    def audit(self, decision: Decision) -> None:
        """Append the decision's JSON line to the audit log (if one is configured)."""
        path = self.settings.audit_log
        if path is None:
            return
        line = (decision.audit_line() + "\n").encode()
        try:
            path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as err:
            self.notice(f"warning: cannot write the audit log {path}: {err.strerror}")


def _label(err: OpkSignError) -> str:
    from opk_sign.verify.outcome import Outcome

    return Outcome.of_error(err).label


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
