"""`opk-sign install containerd-verifier`: verification by default on a node's pulls."""

from __future__ import annotations

import argparse
from pathlib import Path

from opk_sign.cli.options import add_insecure_registry_option

HELP = "install opk-sign where images are pulled (containerd's image verifier)"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from opk_sign.containerd.install import DEFAULT_AUDIT_LOG, DEFAULT_BIN_DIR, DEFAULT_CACHE_DIR

    parser = subparsers.add_parser("install", help=HELP, description=HELP)
    what = parser.add_subparsers(dest="install_target", metavar="TARGET", required=True)
    verifier = what.add_parser(
        "containerd-verifier",
        help="containerd 2.x's image verifier: every transfer-service pull (CRI included) is "
        "verified against the trust repository's mapping",
        description=(
            "Write an executable into containerd's image-verifier directory that runs this "
            "installation of opk-sign on every pull, and its settings file (next to the "
            "directory, never in it: containerd runs every file there). Prints the containerd "
            "config fragment that enables the directory. Mapped names must verify; unmapped "
            "names are allowed, or refused with --unmapped deny. See docs/containerd.md."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verifier.add_argument(
        "--bin-dir",
        type=Path,
        default=DEFAULT_BIN_DIR,
        metavar="DIR",
        help=f"containerd's verifier directory (default: {DEFAULT_BIN_DIR})",
    )
    verifier.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="the settings file to write (default: opk-sign-containerd-verifier.toml next to "
        "--bin-dir)",
    )
    verifier.add_argument(
        "--unmapped",
        choices=("allow", "deny"),
        default="allow",
        help="names the trust repository's mapping does not cover (default: allow)",
    )
    verifier.add_argument(
        "--trust-dir",
        type=Path,
        metavar="DIR",
        help="the trust directory (`opk-sign trust init`; default: the one in use now)",
    )
    verifier.add_argument(
        "--cache-dir",
        type=Path,
        default=DEFAULT_CACHE_DIR,
        metavar="DIR",
        help=f"verified digests and trust state, owner-only (default: {DEFAULT_CACHE_DIR})",
    )
    verifier.add_argument(
        "--audit-log",
        type=Path,
        default=DEFAULT_AUDIT_LOG,
        metavar="FILE",
        help=f"a JSON line per decision (default: {DEFAULT_AUDIT_LOG})",
    )
    verifier.add_argument(
        "--registry-credentials",
        type=Path,
        metavar="FILE",
        help="a docker config.json with the node's registry credentials (default: the docker "
        "config of the user containerd runs as)",
    )
    add_insecure_registry_option(
        verifier, "a registry reached over plain HTTP (repeatable; loopback needs none)"
    )
    verifier.add_argument("--issuer", help="the OIDC issuer (default: GitHub Actions')")
    verifier.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from opk_sign.admission.settings import Settings
    from opk_sign.containerd.install import install
    from opk_sign.errors import UsageError
    from opk_sign.trust.location import default_trust_dir

    trust_dir = args.trust_dir or default_trust_dir()

    def absolute(path: Path | None) -> Path | None:
        return Path(os.path.abspath(path)) if path is not None else None

    try:
        settings = Settings(
            trust_dir=absolute(trust_dir),
            unmapped=args.unmapped,
            registry_credentials=absolute(args.registry_credentials),
            audit_log=absolute(args.audit_log),
            cache_dir=absolute(args.cache_dir),
            insecure_registries=tuple(args.insecure_registries),
            issuer=args.issuer,
            source="the command line",
        )
    except UsageError:
        raise
    installed = install(settings, bin_dir=args.bin_dir, config=args.config)
    print(f"installed {installed.executable} (settings: {installed.config})")
    if not (trust_dir / "config.json").is_file():
        print(
            f"warning: no trust repository is installed in {trust_dir}: every pull will be "
            "refused until one is (`opk-sign trust init`)"
        )
    print("containerd config (/etc/containerd/config.toml), then restart containerd:\n")
    print(installed.fragment)
    return 0
