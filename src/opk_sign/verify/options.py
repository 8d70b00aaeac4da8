"""A verification put together: :class:`VerifyOptions` from plain values, the one way in for the
CLI (``opk-sign verify``, ``pr-check``), the verify action and Python callers.

:func:`build_verify_options` takes what a user can say (a policy or none, key sources as files, a
trust repository or not, TSA certificates, what to verify) and returns the options, or, when no
policy is given and the installed trust repository's mapping decides, a function choosing the
options per image (verification by default, docs/trust.md). Nothing here knows about argparse or
the Actions runner: each front end turns its own input into these arguments.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opk_sign.errors import FormatError, UsageError
from opk_sign.oci.descriptor import Platform
from opk_sign.oidc.github import ISSUER_VAR
from opk_sign.pktoken import GITHUB_ISSUER, ExpiryPolicy, OPKeySource
from opk_sign.pktoken.verify import MAX_AGE_24H
from opk_sign.policy import (
    AllOf,
    IdentityPolicy,
    policy_from_document,
    policy_from_fields,
    policy_issuers,
)

if TYPE_CHECKING:
    from opk_sign.trust.client import TrustClient
    from opk_sign.trust.jwks_archive import JWKSArchive
    from opk_sign.trust.timestamp import TSATrust


def default_issuer(environ: Mapping[str, str] | None = None) -> str:
    """``$OPK_SIGN_OIDC_ISSUER``, else GitHub Actions' issuer."""
    return (os.environ if environ is None else environ).get(ISSUER_VAR) or GITHUB_ISSUER


@dataclass(frozen=True)
class VerifyOptions:
    """What an image must satisfy, and the trust material to decide it with."""

    policy: IdentityPolicy
    keys: OPKeySource
    issuers: frozenset[str]
    expiry: ExpiryPolicy = MAX_AGE_24H
    #: Predicate types each platform manifest must carry a valid attestation of.
    attestations: tuple[str, ...] = ()
    #: Verify the index and only this platform's manifest (else every platform).
    platform: Platform | None = None
    now: float | None = None
    #: Trusted timestamp authorities: a bundle's RFC 3161 timestamps count only with these.
    tsa: TSATrust | None = None
    #: The repository signatures must name, when not the image's own (a mirror's canonical name).
    signed_name: str | None = None


#: Options for one image, or a function choosing them per image (the TUF mapping's policies).
OptionsFor = Callable[[str], VerifyOptions]


def options_for(options: VerifyOptions | OptionsFor, image: str) -> VerifyOptions:
    """The options that apply to ``image``."""
    return options if isinstance(options, VerifyOptions) else options(image)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


# --- the identity policy ------------------------------------------------------------------------


def load_policy_file(path: Path) -> Any:
    """A policy file's parsed document (YAML, or JSON, which YAML reads too); an unreadable or
    unparsable file is a usage error naming it. ``policy_from_document`` builds the policy."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read the policy file {path}: {err}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise UsageError(f"policy file {path} is not valid YAML or JSON: {err}") from None


def build_policy(
    fields: Mapping[str, str] | None = None,
    policy_file: Path | None = None,
    *,
    issuer: str | None = None,
) -> AllOf | None:
    """The identity policy from claim fields (``{"repository": "o/app", "ref-regex": ...}``, the
    issuer apart) or from a policy file, not both; None when neither is given.

    The flags to say so are the caller's: this names fields as ``--field`` since that is how the
    CLI and the action's inputs both spell them in their own messages.
    """
    given = {name: value for name, value in (fields or {}).items() if value is not None}
    issuer = issuer or default_issuer()
    if policy_file is not None:
        if given:
            raise UsageError(
                "give the identity policy as --policy FILE or as flags, not both",
                hint=f"flags also given: {', '.join('--' + k for k in given)}",
            )
        return policy_from_document(load_policy_file(policy_file), default_issuer=issuer)
    if not given:
        return None
    return policy_from_fields({"issuer": issuer, **given})


def no_policy_error(trust_repository: bool = False) -> UsageError:
    hint = "require the signer, e.g. --repository octo-org/app (or --policy FILE)"
    if trust_repository:
        hint += (
            ", or install a trust repository (`opk-sign trust init`) whose mapping names the policy"
        )
    return UsageError(
        "no identity policy: verifying without one would accept any signer", hint=hint
    )


# --- trust material -----------------------------------------------------------------------------


def installed_trust_client(
    *, offline: bool = False, notice: Callable[[str], None] = _stderr
) -> TrustClient | None:
    """The installed TUF trust repository, refreshed once (rollback, freeze, mix-and-match:
    TrustError, exit 14); None when none is installed and ``offline`` is not asked for."""
    from opk_sign.trust.client import CONFIG_FILE, TrustClient, default_trust_dir

    if not offline and not (default_trust_dir() / CONFIG_FILE).is_file():
        return None
    client = TrustClient(offline=offline)
    client.refresh()
    if client.notice:
        notice(f"notice: {client.notice}")
    return client


def load_jwks_archive(path: Path) -> JWKSArchive:
    from opk_sign.trust.jwks_archive import JWKSArchive

    try:
        data = path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read --jwks-archive {path}: {err.strerror}") from None
    return JWKSArchive.from_json(data)


def load_tsa_trust(tsa_certs: Path | None, trust: TrustClient | None) -> TSATrust | None:
    """Trusted TSA certificates: a PEM file and those the trust repository distributes."""
    from opk_sign.trust.timestamp import TSATrust

    pem = b""
    if tsa_certs is not None:
        try:
            pem += tsa_certs.read_bytes()
        except OSError as err:
            raise UsageError(f"cannot read --tsa-certs {tsa_certs}: {err.strerror}") from None
    if trust is not None:
        pem += b"\n" + (trust.tsa_certs() or b"")
    return TSATrust.from_pem(pem) if pem.strip() else None


def _expiry(expiry: str | ExpiryPolicy) -> ExpiryPolicy:
    if isinstance(expiry, ExpiryPolicy):
        return expiry
    try:
        return ExpiryPolicy.from_name(expiry)
    except FormatError as err:
        raise UsageError(f"--expiry-policy: {err}") from None


def _platform(platform: str | Platform | None) -> Platform | None:
    if platform is None or isinstance(platform, Platform):
        return platform
    try:
        return Platform.parse(platform)
    except Exception:  # any parse failure of a user's value is a usage error
        raise UsageError(f"--platform {platform!r}: expected OS/ARCH[/VARIANT]") from None


# --- the whole verification ---------------------------------------------------------------------


def build_verify_options(
    *,
    policy: IdentityPolicy | None = None,
    issuer: str | None = None,
    keys: OPKeySource | None = None,
    jwks_file: Path | None = None,
    jwks_archive_file: Path | None = None,
    tsa_certs_file: Path | None = None,
    trust_repository: bool = True,
    offline: bool = False,
    expiry: str | ExpiryPolicy = "24h",
    attestations: Sequence[str] = (),
    platform: str | Platform | None = None,
    notice: Callable[[str], None] = _stderr,
) -> VerifyOptions | OptionsFor:
    """The options of a run (or, with no ``policy``, a function choosing them per image from the
    installed trust repository's mapping).

    Keys: ``keys`` if given, else the JWKS file, else the issuer's live JWKS by discovery (fetched
    once per run); followed by a JWKS archive file and the trust repository's archive, for keys
    since rotated out. The trust repository (``trust_repository``, when one is installed) also
    adds its TSA certificates. Usage errors come before any trust data is fetched.
    """
    from opk_sign.oidc.discovery import JWKSCache
    from opk_sign.trust.jwks_archive import KeySourceChain
    from opk_sign.verify.keys import jwks_from_file

    issuer = issuer or default_issuer()
    expiry_policy = _expiry(expiry)
    wanted_platform = _platform(platform)
    trust = installed_trust_client(offline=offline, notice=notice) if trust_repository else None
    if policy is None and trust is None:
        raise no_policy_error(trust_repository=True)
    if expiry_policy.max_age is None and not expiry_policy.check_exp:
        notice(
            "warning: --expiry-policy never: PK tokens are accepted however old they are; "
            "a leaked signing key could sign forever"
        )
    if keys is None:
        keys = jwks_from_file(jwks_file, issuer) if jwks_file is not None else JWKSCache()
    archives: list[OPKeySource] = []
    if jwks_archive_file is not None:
        archives.append(load_jwks_archive(jwks_archive_file))
    if trust is not None:
        archive = trust.jwks_archive(issuer)
        if archive is not None:
            archives.append(archive)
    if archives:
        keys = KeySourceChain(keys, *archives)
    tsa = load_tsa_trust(tsa_certs_file, trust)
    chosen_keys = keys

    def make(policy: IdentityPolicy, signed_name: str | None = None) -> VerifyOptions:
        return VerifyOptions(
            policy=policy,
            keys=chosen_keys,
            # The issuer asked for, and those the policy itself requires by name: a policy file
            # or trust-repository policy saying `issuer: <GHES>` is honoured, its keys found by
            # discovery like any issuer's (only a token satisfying the policy can pass).
            issuers=frozenset({issuer}) | policy_issuers(policy),
            expiry=expiry_policy,
            attestations=tuple(attestations),
            platform=wanted_platform,
            tsa=tsa,
            signed_name=signed_name,
        )

    if policy is not None:
        return make(policy)
    assert trust is not None
    return _mapped(trust, make)


def _mapped(
    trust: TrustClient, make: Callable[[IdentityPolicy, str | None], VerifyOptions]
) -> OptionsFor:
    """Verification by default: the mapping names each image's policy; a mapped name must verify."""
    mapping = trust.mapping()
    policies: dict[str, AllOf] = {}
    lock = threading.Lock()

    def choose(image: str) -> VerifyOptions:
        rule = mapping.lookup(image)
        if rule is None:
            raise UsageError(
                f"no policy applies to {image}: the trust repository's mapping does not cover it",
                hint="give the policy with flags (--repository ...) or --policy FILE",
            )
        with lock:  # images are verified in parallel; each policy is fetched once
            if rule.policy not in policies:
                policies[rule.policy] = trust.policy(rule.policy)
        return make(policies[rule.policy], rule.name)

    return choose


def describe_policy(options: VerifyOptions | OptionsFor) -> str:
    """The policy in one line, for reports (the mapping's, per image, when it decides)."""
    if isinstance(options, VerifyOptions):
        return options.policy.describe()
    return "per image, from the trust repository's mapping"
