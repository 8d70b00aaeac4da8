"""`opk-sign sign IMAGE`: sign an image and push its signatures and attestations as referrers."""

from __future__ import annotations

import argparse
import json

from opk_sign.cli.options import add_registry_options, add_signing_options, path_argument
from opk_sign.errors import UsageError, printable

TYPE_CHECKING = False  # typing.TYPE_CHECKING: `sign --help` imports neither typing nor pathlib
if TYPE_CHECKING:
    from opk_sign.sign.image import SigningResult

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
        type=path_argument,
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
        type=path_argument,
        metavar="FILE",
        help="a JSON predicate (SBOM, scan result) to attach as an extra attestation to every "
        "platform manifest; needs --predicate-type",
    )
    parser.add_argument(
        "--predicate-type",
        metavar="URI",
        help="the predicate's type, e.g. https://spdx.dev/Document",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="output format (default: text)",
    )
    add_signing_options(parser)
    add_registry_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from opk_sign.cli.options import registry_client, signing
    from opk_sign.oci.reference import Reference
    from opk_sign.sign.image import CustomPredicate, sign_image

    if args.predicate_type and not args.predicate:
        raise UsageError("--predicate-type needs --predicate FILE")
    predicate = (
        CustomPredicate.from_file(args.predicate, args.predicate_type) if args.predicate else None
    )
    if (args.image is None) == (args.images_from is None):
        raise UsageError("give IMAGE or --images-from FILE (one of them)")
    provider, options = signing(
        args, recursive=args.recursive, provenance=args.provenance, predicate=predicate
    )
    if args.attestation_manifests:
        options = replace(options, attestation_manifests=True)
    if args.images_from is not None:
        from opk_sign.cli.signbatch import run_batch

        return run_batch(args, provider, options, format_result)
    reference = Reference.parse(args.image)
    with registry_client(args, reference.registry) as client:
        result = sign_image(reference, provider=provider, client=client, options=options)
    if args.output == "json":
        print(json.dumps(result.to_dict(image=args.image), indent=2))
    else:
        print(printable(format_result(result)))
    return 0


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
