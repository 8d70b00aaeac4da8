"""``opk-sign download IMAGE --dir DIR``: an offline kit (docs/offline.md) for ``--from-dir``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opk_sign.cli.options import add_registry_options, http_config, registry_client
from opk_sign.errors import printable
from opk_sign.issuer import default_issuer
from opk_sign.oci.reference import Reference

if TYPE_CHECKING:
    from opk_sign.trust.client import TrustClient

EPILOG = """\
exit codes: 0 written; 2 usage (DIR not empty, bad reference); 13 registry error; 14 the issuer's
JWKS or the trust repository could not be had; 15 no such image. Nothing is left in DIR on error.

example:
  opk-sign download ghcr.io/octo-org/app:v1 --dir app-kit
  # later, anywhere, with no network:
  opk-sign verify --from-dir app-kit ghcr.io/octo-org/app@sha256:... --repository octo-org/app
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "download",
        help="write an image's signatures and the trust material to verify them to a directory",
        description="Write an offline kit of IMAGE to DIR: its manifests (index and platforms, "
        "not the layers) and every opk-sign signature and attestation, as an OCI image layout, "
        "with the issuer's JWKS, its JWKS archive, the trusted TSA certificates and the trust "
        "repository's policy for the name under DIR/opk-sign/. `opk-sign verify --from-dir DIR "
        "NAME@DIGEST` verifies from it with no network at all.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("image", metavar="IMAGE", help="image reference (name[:tag][@digest])")
    parser.add_argument(
        "--dir",
        dest="directory",
        type=Path,
        required=True,
        metavar="DIR",
        help="a new or empty directory to write the kit to",
    )
    parser.add_argument(
        "--issuer",
        default=default_issuer(),
        metavar="URL",
        help="the issuer whose JWKS to include (default: $OPK_SIGN_OIDC_ISSUER or GitHub Actions')",
    )
    parser.add_argument(
        "--jwks-archive",
        type=Path,
        metavar="FILE",
        help="include this JWKS archive (default: the trust repository's, if it has one)",
    )
    parser.add_argument(
        "--tsa-certs",
        type=Path,
        metavar="FILE",
        help="include these trusted TSA certificates (with the trust repository's)",
    )
    parser.add_argument(
        "--tlog-keys",
        type=Path,
        metavar="FILE",
        help="include these transparency log keys (default: the trust repository's, if any)",
    )
    parser.add_argument(
        "--no-trust-repo",
        dest="trust_repo",
        action="store_false",
        help="do not consult the installed TUF trust repository",
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    add_registry_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from opk_sign.http import new_session
    from opk_sign.oidc.discovery import JWKSCache
    from opk_sign.verify.kit import TrustMaterial, download_kit
    from opk_sign.verify.options import installed_trust_client, load_jwks_archive

    reference = Reference.parse(args.image)
    http = http_config(args)
    trust = installed_trust_client(http=http) if args.trust_repo else None
    archive = (
        load_jwks_archive(args.jwks_archive)
        if args.jwks_archive is not None
        else (trust.jwks_archive(args.issuer) if trust is not None else None)
    )
    pem = b""
    if args.tsa_certs is not None:
        from opk_sign.errors import UsageError

        try:
            pem = args.tsa_certs.read_bytes()
        except OSError as err:
            raise UsageError(f"cannot read --tsa-certs {args.tsa_certs}: {err.strerror}") from None
    if trust is not None:
        pem += trust.tsa_certs() or b""
    with new_session(http) as session:
        jwks = JWKSCache(session).get(args.issuer)
    material = TrustMaterial(
        jwks=jwks,
        jwks_archive=archive,
        tsa_pem=pem or None,
        trust=trust,
        tlog_keys=_tlog_keys(args, trust),
    )
    with registry_client(args, reference.registry) as client:
        report = download_kit(
            client, args.image, args.directory, issuer=args.issuer, material=material
        )
    if args.output == "json":
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    print(
        f"wrote {args.directory}: {len(report.manifests)} manifests, {report.bundles} bundles"
        + (f" ({len(report.skipped)} unreadable referrers left out)" if report.skipped else "")
        + "".join(f"\n  {name}: {path}" for name, path in report.files.items())
    )
    for skipped in report.skipped:
        print(printable(f"  left out: {skipped}"))
    policy = (
        f"--policy {args.directory / 'opk-sign' / 'policy.json'}"
        if report.policy is not None
        else "--repository OWNER/REPO"
    )
    print(f"verify it offline with:\n  {report.verify_command} {policy}")
    return 0


def _tlog_keys(args: argparse.Namespace, trust: TrustClient | None) -> bytes | None:
    """The transparency log keys to put in the kit: --tlog-keys, else the trust repository's
    (checked as a verifier will read them)."""
    from opk_sign.trust.client import TLOG_KEYS_TARGET
    from opk_sign.verify.options import load_tlog_trust

    if args.tlog_keys is None:
        return trust.target(TLOG_KEYS_TARGET) if trust is not None else None
    trusted = load_tlog_trust(args.tlog_keys, None)
    return trusted.encode().encode() if trusted is not None else None
