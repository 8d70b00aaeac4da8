"""Option groups shared by the subcommands: the identity policy, the trust material and what to
verify (``verify``, ``pr-check``), registry credentials (every command that talks to a
registry), and signing (``sign``, ``library sign``).

One definition of each flag, so every command reads it the same way. Parsed options become
library values here and nothing more: :func:`verify_options` hands them to
``opk_sign.verify.options``, which puts a verification together for the CLI, the verify action
and Python callers alike.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

from opk_sign.claims import NO_REGEX
from opk_sign.claims import POLICY_FIELDS as FIELDS
from opk_sign.errors import UsageError
from opk_sign.issuer import ISSUER_VAR, default_issuer
from opk_sign.names import (
    DEFAULT_EXCHANGE_TIMEOUT,
    ENV_INSECURE_REGISTRIES,
    INSECURE_REGISTRY_FLAG,
    TLOG_MODE_VAR,
    TLOG_MODES,
    TLOG_URL_VAR,
)

# Defining the options imports no more than the above (``opk-sign verify --help``, issue 13: no
# dataclasses, pathlib or typing): the library each option becomes is imported by the function
# that builds it.
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path
    from typing import Any

    from opk_sign.http import HTTPConfig
    from opk_sign.oci.client import RegistryClient
    from opk_sign.oidc import TokenProvider
    from opk_sign.policy import AllOf
    from opk_sign.sign.image import SigningOptions
    from opk_sign.verify.options import OptionsFor, VerifyOptions


def add_verification_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The identity policy, the trust material, and what to verify (--platform, --attestation).

    Returns the "what to verify" group, for a command's own options of that kind.
    """
    add_policy_options(parser)
    add_trust_options(parser)
    what = parser.add_argument_group("what to verify")
    what.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help="verify the index and only this platform's manifest (default: every platform)",
    )
    what.add_argument(
        "--attestation",
        action="append",
        default=[],
        metavar="TYPE",
        help="also require a valid attestation of this predicate type on every platform "
        "manifest, e.g. https://slsa.dev/provenance/v1 (repeatable); an opk-sign attestation or "
        "a BuildKit in-index attestation covered by a signature (docs/official-images.md)",
    )
    what.add_argument(
        "--source-repository",
        metavar="URL",
        help="require every platform's BuildKit SLSA provenance to name this source Git "
        "repository (policy field source-repository)",
    )
    what.add_argument(
        "--source-commit",
        metavar="SHA",
        help="require every platform's BuildKit SLSA provenance to name this source commit "
        "(policy field source-commit)",
    )
    return what


def add_policy_options(parser: argparse.ArgumentParser) -> None:
    """One flag per claim (and its -regex variant), or --policy FILE."""
    policy = parser.add_argument_group(
        "identity policy",
        "Each flag requires a claim of the signer's PK token to equal VALUE; the -regex "
        "variants require an anchored (full) match. All given flags must hold.",
    )
    for name, claim in FIELDS.items():
        default = default_issuer() if name == "issuer" else None
        # gh spells --repository --repo; with abbreviations off, the alias is explicit.
        flags = [f"--{name}", "--repo"] if name == "repository" else [f"--{name}"]
        policy.add_argument(
            *flags,
            dest=name.replace("-", "_"),
            metavar="VALUE",
            default=default,
            help=f"the {claim} claim" + (" (default: GitHub Actions' issuer)" if default else ""),
        )
        if name not in NO_REGEX:
            regex_flags = [f"--{name}-regex"] + (["--repo-regex"] if name == "repository" else [])
            policy.add_argument(
                *regex_flags,
                dest=f"{name.replace('-', '_')}_regex",
                metavar="REGEX",
                help=f"the {claim} claim",
            )
    policy.add_argument(
        "--policy",
        type=path_argument,
        metavar="FILE",
        help="a YAML or JSON policy file (same fields, with all-of / any-of); see docs/verify.md",
    )
    policy.add_argument(
        "--signed-repository",
        action="append",
        default=[],
        metavar="NAME",
        help="a repository the image may have been signed in besides its own, e.g. the source "
        "of `opk-sign copy` or of a mirror (repeatable); a signature made for any other "
        "repository is still refused, and the signer must still satisfy the policy",
    )


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    """The issuer's keys (live, a file, an archive), timestamp authorities, the TUF repository."""
    trust = parser.add_argument_group("trust material")
    trust.add_argument(
        "--jwks",
        type=path_argument,
        metavar="FILE",
        help="the issuer's JWKS from a file instead of the live one (offline verification)",
    )
    trust.add_argument(
        "--jwks-archive",
        type=path_argument,
        metavar="FILE",
        help="a JWKS archive (docs/trust.md): keys the issuer has since rotated out, each usable "
        "for tokens issued while it was published",
    )
    trust.add_argument(
        "--tsa-certs",
        type=path_argument,
        metavar="FILE",
        help="PEM certificates of trusted timestamp authorities: a bundle's RFC 3161 timestamp "
        "inside the PK token's validity window lets the signature verify after it",
    )
    trust.add_argument(
        "--tlog-keys",
        type=path_argument,
        metavar="FILE",
        help="trusted transparency log and witness keys (C2SP note verifier keys: lines "
        "'log <vkey>', 'witness <vkey>', 'quorum <N>'); a bundle's log entries are checked "
        "offline with them (docs/transparency.md)",
    )
    trust.add_argument(
        "--require-tlog",
        action="store_true",
        help="every bundle must carry a transparency log entry that verifies under the trusted "
        "log keys: a bundle without one is invalid (12)",
    )
    trust.add_argument(
        "--offline",
        action="store_true",
        help="use the cached trust repository data without refreshing it (says so)",
    )
    trust.add_argument(
        "--no-trust-repo",
        dest="trust_repo",
        action="store_false",
        help="do not consult the installed TUF trust repository (`opk-sign trust init`)",
    )
    trust.add_argument(
        "--expiry-policy",
        default="24h",
        metavar="POLICY",
        help="how long a PK token stays valid after iat: 24h (default), 12h, 48h, 1w, oidc, "
        "never (an explicit opt-in; prints a warning), or e.g. 90m",
    )


def policy_fields(args: argparse.Namespace) -> dict[str, str]:
    """The claim flags given (``{"repository": ..., "ref-regex": ...}``), the issuer apart."""
    fields: dict[str, str] = {}
    for name in FIELDS:
        if name == "issuer":
            continue
        value = getattr(args, name.replace("-", "_"), None)
        if value is not None:
            fields[name] = value
        regex = getattr(args, f"{name.replace('-', '_')}_regex", None)
        if regex is not None:
            fields[f"{name}-regex"] = regex
    return fields


def build_policy(args: argparse.Namespace) -> AllOf:
    """The identity policy from --policy FILE or from the claim flags (not both)."""
    from opk_sign.verify.options import build_policy as policy_from
    from opk_sign.verify.options import no_policy_error

    policy = policy_from(policy_fields(args), args.policy, issuer=args.issuer)
    if policy is None:
        raise no_policy_error()
    return policy


def verify_options(args: argparse.Namespace) -> VerifyOptions | OptionsFor:
    """The verification the options describe (``opk_sign.verify.options`` puts it together)."""
    from opk_sign.verify.options import build_policy as policy_from
    from opk_sign.verify.options import build_verify_options

    # A bad policy is a usage error before any trust data is fetched.
    policy = policy_from(policy_fields(args), args.policy, issuer=args.issuer)
    return build_verify_options(
        policy=policy,
        jwks_file=args.jwks,
        jwks_archive_file=args.jwks_archive,
        tsa_certs_file=args.tsa_certs,
        tlog_keys_file=args.tlog_keys,
        trust_repository=args.trust_repo,
        offline=args.offline,
        **requirement_options(args),
    )


def requirement_options(args: argparse.Namespace) -> dict[str, Any]:
    """What every verification path (the registry's, ``--from-dir``'s) hands on unchanged from
    the flags: the requirements on the image. One place, so that no path drops one."""
    return {
        "issuer": args.issuer,
        "require_tlog": args.require_tlog,
        "expiry": args.expiry_policy,
        "attestations": args.attestation,
        "platform": args.platform,
        "signed_in": args.signed_repository,
        "http": http_config(args),
        "source_repository": getattr(args, "source_repository", None),
        "source_commit": getattr(args, "source_commit", None),
    }


# --- registry credentials ---------------------------------------------------------------------

ENV_USERNAME = "OPK_SIGN_REGISTRY_USERNAME"
ENV_PASSWORD = "OPK_SIGN_REGISTRY_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
ENV_TOKEN = "OPK_SIGN_REGISTRY_TOKEN"  # noqa: S105 - the name of a variable, not a secret


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "registry credentials",
        "Explicit credentials (for one registry) come first, then the docker config "
        "(credHelpers, credsStore, auths), then anonymous access. Secrets are read from the "
        f"environment ({ENV_PASSWORD}, {ENV_TOKEN}) or stdin, never from the command line. "
        "Registries are reached over HTTPS; plain HTTP only on loopback and to the registries "
        f"named with {INSECURE_REGISTRY_FLAG} or ${ENV_INSECURE_REGISTRIES}.",
    )
    group.add_argument(
        "--registry-username",
        metavar="USER",
        help=f"username for explicit credentials (default: ${ENV_USERNAME})",
    )
    group.add_argument(
        "--registry-password-stdin",
        action="store_true",
        help="read the password (or token) for --registry-username from stdin",
    )
    group.add_argument(
        "--registry-auth-host",
        metavar="HOST",
        help="the registry the explicit credentials are for (default: the image's registry)",
    )
    group.add_argument(
        "--docker-config",
        metavar="DIR",
        type=path_argument,
        help="directory of the docker config.json (default: $DOCKER_CONFIG or ~/.docker)",
    )
    group.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="the most one network exchange may take in all (connect, answer, whole body, "
        f"retries): a server trickling its answer is cut off (default: "
        f"{DEFAULT_EXCHANGE_TIMEOUT:g}); verify also bounds each image and the run by it "
        "(docs/verify.md, Deadlines)",
    )
    add_insecure_registry_option(
        group,
        "reach this registry over plain HTTP (repeatable; also "
        f"${ENV_INSECURE_REGISTRIES}, comma- or space-separated): exactly as written, so "
        "10.0.0.5:5000 is not 10.0.0.5 on another port, and a token server on plain HTTP must "
        "be named too. Anyone on the network can read and change what is sent, credentials "
        "included; loopback registries need no flag, every other registry gets HTTPS",
    )


def add_insecure_registry_option(parser: argparse._ActionsContainer, help_text: str) -> None:
    """--insecure-registry HOST[:PORT] (repeatable, ``args.insecure_registries``), each checked
    as it is parsed: a bad one is a usage error naming the flag, the same in every command. The
    help is the command's: not every command also reads the environment."""
    parser.add_argument(
        INSECURE_REGISTRY_FLAG,
        dest="insecure_registries",
        action="append",
        default=[],
        type=_registry_host,
        metavar="HOST[:PORT]",
        help=help_text,
    )


def path_argument(text: str) -> Path:
    """A path option's value (``type=``): pathlib is imported when an option is given, not to
    define the options."""
    from pathlib import Path

    return Path(text)


def _registry_host(text: str) -> str:
    from opk_sign.urls import parse_registry_host

    try:
        parse_registry_host(text, INSECURE_REGISTRY_FLAG)
    except UsageError as err:
        # argparse names the option itself: "argument --insecure-registry: ..."
        raise argparse.ArgumentTypeError(
            err.diagnostics().removeprefix(f"{INSECURE_REGISTRY_FLAG}: ")
        ) from None
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def http_config(args: argparse.Namespace) -> HTTPConfig:
    """The run's HTTP settings: the defaults, with --timeout as each exchange's deadline."""
    from dataclasses import replace

    from opk_sign.http import DEFAULT_HTTP

    timeout: float | None = getattr(args, "timeout", None)
    return DEFAULT_HTTP if timeout is None else replace(DEFAULT_HTTP, exchange_timeout=timeout)


def registry_client(
    args: argparse.Namespace, default_registry: str, environ: Mapping[str, str] | None = None
) -> RegistryClient:
    """A client with the keychain the options and environment describe."""
    from opk_sign.oci.client import RegistryClient
    from opk_sign.oci.credentials import ExplicitCredentials
    from opk_sign.oci.dockerconfig import DockerConfig
    from opk_sign.oci.keychain import Keychain
    from opk_sign.urls import InsecureRegistries

    env = os.environ if environ is None else environ
    username = args.registry_username or env.get(ENV_USERNAME) or None
    password = env.get(ENV_PASSWORD) or None
    if args.registry_password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError("--registry-password-stdin: nothing on stdin")
    token = env.get(ENV_TOKEN) or None
    if password and token:
        raise UsageError(f"give a password or {ENV_TOKEN}, not both")
    if password and not username:
        raise UsageError(
            "a registry password needs a username (--registry-username or "
            f"${ENV_USERNAME}); for a token without one use ${ENV_TOKEN}"
        )
    if username and not password and not token:
        # Dropping the username silently would end in a 401 and exit 13 for a missing secret.
        raise UsageError(
            f"a registry username ({username!r}) without a password",
            hint="give the password on stdin with --registry-password-stdin, or in "
            f"${ENV_PASSWORD}",
        )
    host = args.registry_auth_host or default_registry
    source = "explicit credentials (options/environment)"
    explicit = ExplicitCredentials.for_registry(
        host, username=username, password=password, token=token, source=source
    )
    docker_config = DockerConfig.load(args.docker_config, environ=env)
    insecure = InsecureRegistries.parse(getattr(args, "insecure_registries", None) or ())
    return RegistryClient(
        Keychain.default(explicit, docker_config=docker_config),
        http_config(args),
        insecure_registries=insecure.union(InsecureRegistries.from_environment(env)),
    )


# --- signing (sign, library sign) ----------------------------------------------------------------

#: For --help only (importing opk_sign.trust.tsa here would slow every command down); the
#: default itself is opk_sign.trust.tsa.DEFAULT_TIMESTAMP_URL.
PUBLIC_TSA = "https://timestamp.sigstore.dev/api/v1/timestamp"
#: Likewise opk_sign.tlog.modes.DEFAULT_TLOG_URL.
PUBLIC_TLOG = "https://log2025-1.rekor.sigstore.dev"


def add_signing_options(parser: argparse.ArgumentParser) -> None:
    """The ID token's issuer, the timestamp authority and the transparency log: one definition
    for every command that signs, so that ``sign`` and ``library sign`` take the same flags with
    the same defaults and environment, and log public repositories alike (:func:`signing`)."""
    group = parser.add_argument_group("signing")
    timestamps = group.add_mutually_exclusive_group()
    timestamps.add_argument(
        "--timestamp-url",
        metavar="URL",
        help="RFC 3161 timestamp authority that timestamps every signature, so that it verifies "
        "after the PK token's 24 hours (default: $OPK_SIGN_TIMESTAMP_URL, else Sigstore's public "
        f"TSA {PUBLIC_TSA})",
    )
    timestamps.add_argument(
        "--no-timestamp",
        action="store_true",
        help="do not timestamp; the signatures then verify only while the PK token is fresh",
    )
    group.add_argument(
        "--oidc-issuer",
        default=os.environ.get(ISSUER_VAR) or None,
        metavar="URL",
        help="the issuer the ID token must come from (default: GitHub's for this server)",
    )
    group.add_argument(
        "--tlog",
        choices=TLOG_MODES,
        default=os.environ.get(TLOG_MODE_VAR) or "auto",
        help="log every signature and attestation in a Rekor v2 transparency log: auto (only "
        "when the ID token says the repository is public), always, never (default: "
        f"${TLOG_MODE_VAR}, else auto; docs/transparency.md)",
    )
    group.add_argument(
        "--tlog-url",
        metavar="URL",
        default=os.environ.get(TLOG_URL_VAR) or None,
        help=f"the Rekor v2 log (default: ${TLOG_URL_VAR}, else Sigstore's {PUBLIC_TLOG})",
    )


def signing(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None, **options: Any
) -> tuple[TokenProvider, SigningOptions]:
    """Where the ID token comes from, and the SigningOptions of the signing flags and the
    environment; ``options`` are the command's own (``provenance``, ``recursive``...)."""
    from opk_sign.oidc import GitHubActionsProvider
    from opk_sign.sign.image import SigningOptions
    from opk_sign.tlog.modes import DEFAULT_TLOG_URL

    env = os.environ if environ is None else environ
    if args.tlog not in TLOG_MODES:  # argparse checks --tlog's choices, not its default
        raise UsageError(
            f"${TLOG_MODE_VAR} is {args.tlog!r}: it must be one of {', '.join(TLOG_MODES)}",
            hint=f"set ${TLOG_MODE_VAR} to auto, always or never, or give --tlog",
        )
    signing_options = SigningOptions(
        server_url=env.get("GITHUB_SERVER_URL") or "https://github.com",
        timestamp_url=timestamp_url(args, env),
        tlog=str(args.tlog),
        tlog_url=str(args.tlog_url or DEFAULT_TLOG_URL),
        **options,
    )
    return GitHubActionsProvider(issuer=args.oidc_issuer), signing_options


def timestamp_url(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """The TSA to timestamp with: --timestamp-url, else $OPK_SIGN_TIMESTAMP_URL, else the public
    default; None with --no-timestamp."""
    from opk_sign.trust.tsa import DEFAULT_TIMESTAMP_URL, TIMESTAMP_URL_VAR

    if args.no_timestamp:
        return None
    return str(args.timestamp_url or env.get(TIMESTAMP_URL_VAR) or DEFAULT_TIMESTAMP_URL)
