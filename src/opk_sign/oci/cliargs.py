"""Registry options shared by the subcommands that talk to registries (inspect, copy, sign...)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path

from opk_sign.errors import UsageError
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.credentials import ExplicitCredentials, Keychain
from opk_sign.oci.dockerconfig import DockerConfig

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
