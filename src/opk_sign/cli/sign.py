"""`opk-sign sign IMAGE`: sign an image and push its signatures and attestations as referrers."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from opk_sign.cli.options import add_registry_options
from opk_sign.errors import UsageError
from opk_sign.issuer import ISSUER_VAR

if TYPE_CHECKING:
    from opk_sign.sign.image import SigningResult

#: For --help only (importing opk_sign.trust.timestamp here would slow every command down); the
#: default itself is opk_sign.trust.timestamp.DEFAULT_TIMESTAMP_URL.
PUBLIC_TSA = "https://timestamp.sigstore.dev/api/v1/timestamp"
#: Likewise opk_sign.tlog.client.DEFAULT_TLOG_URL.
PUBLIC_TLOG = "https://log2025-1.rekor.sigstore.dev"

EPILOG = """\
exit codes:
  0   every manifest was signed (and attested)
  1   failure, e.g. no ID token could be had (see the hint: `permissions: id-token: write`)
  2   usage: bad arguments, unreadable predicate file, invalid image reference
  12  the ID token did not verify against the issuer's keys, or the timestamp authority
      or the transparency log refused or answered something else
  13  the registry, the timestamp authority or the network failed; the message lists what was
      signed and what was not
  14  the issuer's keys (discovery, JWKS) could not be fetched
  15  the image (name, tag or digest) does not exist
with --images-from, each image is signed and reported on its own; the exit code is the first
failed image's, and the summary on stderr names what was and was not signed

environment:
  ACTIONS_ID_TOKEN_REQUEST_URL, ACTIONS_ID_TOKEN_REQUEST_TOKEN
                              set by GitHub Actions under `permissions: id-token: write`
  OPK_SIGN_OIDC_ISSUER        issuer to expect instead of GitHub's (GHES, or the local emulator)
  OPK_SIGN_TIMESTAMP_URL      the RFC 3161 timestamp authority (default: Sigstore's public TSA)
  OPK_SIGN_TLOG, OPK_SIGN_TLOG_URL
                              the default of --tlog, and the transparency log (--tlog-url)
  OPK_SIGN_REGISTRY_USERNAME, OPK_SIGN_REGISTRY_PASSWORD, OPK_SIGN_REGISTRY_TOKEN
                              registry credentials (else the docker config, else anonymous)
  DOCKER_CONFIG               directory of the docker config.json to read credentials from
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sign",
        help="sign an image with the CI job's identity (keyless, OpenPubkey)",
        description=(
            "Sign IMAGE (a tag or name@digest) and, by default, every platform manifest it lists; "
            "attach a SLSA provenance attestation to every platform manifest. Signatures and "
            "attestations are stored in the image's repository as OCI referrers. A tag signs "
            "what it points to now; the digest signed is printed."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "image", metavar="IMAGE", nargs="?", help="image reference, e.g. ghcr.io/o/app:v1"
    )
    parser.add_argument(
        "--images-from",
        type=Path,
        metavar="FILE",
        help="sign every image listed in FILE (one per line, # comments; - for stdin) with one "
        "key, one ID token and one PK token; each image is signed and reported on its own",
    )
    parser.add_argument(
        "--attestation-manifests",
        action="store_true",
        help="also sign BuildKit's attestation manifests (in the index and those pushed as "
        "referrers): for attestation manifests added after the index was signed",
    )
    parser.add_argument(
        "--recursive",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also sign every platform manifest of an index (default: on)",
    )
    parser.add_argument(
        "--no-provenance",
        dest="provenance",
        action="store_false",
        help="do not attach a SLSA provenance attestation",
    )
    parser.add_argument(
        "--predicate",
        type=Path,
        metavar="FILE",
        help="a JSON predicate (SBOM, scan result) to attach as an extra attestation to every "
        "platform manifest; needs --predicate-type",
    )
    parser.add_argument(
        "--predicate-type",
        metavar="URI",
        help="the predicate's type, e.g. https://spdx.dev/Document",
    )
    timestamps = parser.add_mutually_exclusive_group()
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
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="output format (default: text)",
    )
    parser.add_argument(
        "--oidc-issuer",
        default=os.environ.get(ISSUER_VAR) or None,
        metavar="URL",
        help="the issuer the ID token must come from (default: GitHub's for this server)",
    )
    parser.add_argument(
        "--tlog",
        choices=("auto", "always", "never"),
        default=os.environ.get("OPK_SIGN_TLOG") or "auto",
        help="log every signature and attestation in a Rekor v2 transparency log: auto (only "
        "when the ID token says the repository is public), always, never (default: "
        "$OPK_SIGN_TLOG, else auto; docs/transparency.md)",
    )
    parser.add_argument(
        "--tlog-url",
        metavar="URL",
        default=os.environ.get("OPK_SIGN_TLOG_URL") or None,
        help=f"the Rekor v2 log (default: $OPK_SIGN_TLOG_URL, else Sigstore's {PUBLIC_TLOG})",
    )
    add_registry_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from opk_sign.cli.options import registry_client
    from opk_sign.oci.reference import Reference
    from opk_sign.oidc import GitHubActionsProvider
    from opk_sign.sign.image import CustomPredicate, SigningOptions, sign_image

    if args.predicate_type and not args.predicate:
        raise UsageError("--predicate-type needs --predicate FILE")
    predicate = (
        CustomPredicate.from_file(args.predicate, args.predicate_type) if args.predicate else None
    )
    if (args.image is None) == (args.images_from is None):
        raise UsageError("give IMAGE or --images-from FILE (one of them)")
    options = SigningOptions(
        recursive=args.recursive,
        provenance=args.provenance,
        predicate=predicate,
        server_url=os.environ.get("GITHUB_SERVER_URL") or "https://github.com",
        timestamp_url=timestamp_url(args, os.environ),
        tlog=str(args.tlog),
        tlog_url=str(args.tlog_url or PUBLIC_TLOG),
    )
    if args.attestation_manifests:
        options = replace(options, attestation_manifests=True)
    provider = GitHubActionsProvider(issuer=args.oidc_issuer)
    if args.images_from is not None:
        from opk_sign.cli.signbatch import run_batch

        return run_batch(args, provider, options, format_result)
    reference = Reference.parse(args.image)
    with registry_client(args, reference.registry) as client:
        result = sign_image(reference, provider=provider, client=client, options=options)
    if args.output == "json":
        print(json.dumps(result.to_dict(image=args.image), indent=2))
    else:
        print(format_result(result))
    return 0


def timestamp_url(args: argparse.Namespace, env: Mapping[str, str]) -> str | None:
    """The TSA to timestamp with: --timestamp-url, else $OPK_SIGN_TIMESTAMP_URL, else the public
    default; None with --no-timestamp."""
    from opk_sign.trust.tsa import DEFAULT_TIMESTAMP_URL, TIMESTAMP_URL_VAR

    if args.no_timestamp:
        return None
    return str(args.timestamp_url or env.get(TIMESTAMP_URL_VAR) or DEFAULT_TIMESTAMP_URL)


def format_result(result: SigningResult) -> str:
    """The human summary of a SigningResult."""
    lines = [
        f"Signed {result.reference}",
        f"  identity: {result.identity.principal}",
        f"  issuer:   {result.issuer}",
    ]
    for manifest in result.manifests:
        label = "index" if manifest.is_index else (manifest.platform or "manifest")
        if manifest.attestation_for is not None:
            label = f"attestation manifest of {manifest.attestation_for}"
        lines.append(f"  {manifest.digest}  {label}")
        lines.append(f"    signature    {manifest.signature}")
        for attestation in manifest.attestations:
            lines.append(f"    attestation  {attestation.referrer}  {attestation.predicate_type}")
    return "\n".join(lines)
