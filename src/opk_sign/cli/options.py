"""The verification options, shared by every command that verifies (``verify``, ``pr-check``)
and by the verify action.

One definition of the identity-policy flags, the trust material and what to verify, so that every
way in reads a policy the same way; ``opk_sign.cli.verify.build_options`` turns the parsed
namespace into verification options.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from opk_sign.errors import UsageError
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.credentials import ExplicitCredentials, Keychain
from opk_sign.oci.dockerconfig import DockerConfig
from opk_sign.pktoken import GITHUB_ISSUER
from opk_sign.policy import FIELDS

#: Policy fields that take no -regex variant: the issuer picks which keys to fetch.
NO_REGEX: Final = frozenset({"issuer"})
#: Where the default issuer can be overridden (GHES with its own issuer, the local emulator).
ISSUER_VAR: Final = "OPK_SIGN_OIDC_ISSUER"


def default_issuer() -> str:
    return os.environ.get(ISSUER_VAR) or GITHUB_ISSUER


def policy_field_names() -> list[str]:
    """Every policy field as a flag or action input name: ``repository``, ``repository-regex``..."""
    names: list[str] = []
    for name in FIELDS:
        names.append(name)
        if name not in NO_REGEX:
            names.append(f"{name}-regex")
    return names


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
        "manifest, e.g. https://slsa.dev/provenance/v1 (repeatable)",
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
        policy.add_argument(
            f"--{name}",
            metavar="VALUE",
            default=default,
            help=f"the {claim} claim" + (" (default: GitHub Actions' issuer)" if default else ""),
        )
        if name not in NO_REGEX:
            policy.add_argument(f"--{name}-regex", metavar="REGEX", help=f"the {claim} claim")
    policy.add_argument(
        "--policy",
        type=Path,
        metavar="FILE",
        help="a YAML or JSON policy file (same fields, with all-of / any-of); see docs/verify.md",
    )


def add_trust_options(parser: argparse.ArgumentParser) -> None:
    """The issuer's keys (live, a file, an archive), timestamp authorities, the TUF repository."""
    trust = parser.add_argument_group("trust material")
    trust.add_argument(
        "--jwks",
        type=Path,
        metavar="FILE",
        help="the issuer's JWKS from a file instead of the live one (offline verification)",
    )
    trust.add_argument(
        "--jwks-archive",
        type=Path,
        metavar="FILE",
        help="a JWKS archive (docs/trust.md): keys the issuer has since rotated out, each usable "
        "for tokens issued while it was published",
    )
    trust.add_argument(
        "--tsa-certs",
        type=Path,
        metavar="FILE",
        help="PEM certificates of trusted timestamp authorities: a bundle's RFC 3161 timestamp "
        "inside the PK token's validity window lets the signature verify after it",
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


def verification_parser() -> argparse.ArgumentParser:
    """A parser of the verification options alone (the verify action builds its options with it:
    inputs become ``--name=value`` arguments, so they go through exactly the CLI's checks)."""
    parser = argparse.ArgumentParser(prog="opk-sign verify", add_help=False, exit_on_error=False)
    add_verification_options(parser)
    return parser


# --- registry credentials ---------------------------------------------------------------------

ENV_USERNAME = "OPK_SIGN_REGISTRY_USERNAME"
ENV_PASSWORD = "OPK_SIGN_REGISTRY_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
ENV_TOKEN = "OPK_SIGN_REGISTRY_TOKEN"  # noqa: S105 - the name of a variable, not a secret


def add_registry_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "registry credentials",
        "Explicit credentials (for one registry) come first, then the docker config "
        "(credHelpers, credsStore, auths), then anonymous access. Secrets are read from the "
        f"environment ({ENV_PASSWORD}, {ENV_TOKEN}) or stdin, never from the command line.",
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
        type=Path,
        help="directory of the docker config.json (default: $DOCKER_CONFIG or ~/.docker)",
    )


def registry_client(
    args: argparse.Namespace, default_registry: str, environ: Mapping[str, str] | None = None
) -> RegistryClient:
    """A client with the keychain the options and environment describe."""
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
    host = args.registry_auth_host or default_registry
    source = "explicit credentials (options/environment)"
    explicit = ExplicitCredentials.for_registry(
        host, username=username, password=password, token=token, source=source
    )
    docker_config = DockerConfig.load(args.docker_config, environ=env)
    return RegistryClient(Keychain.default(explicit, docker_config=docker_config))
