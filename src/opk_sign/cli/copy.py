"""``opk-sign copy SRC DST``: copy an image, every platform, with all its referrers."""

from __future__ import annotations

import argparse
import json
import re
from typing import TYPE_CHECKING, Any

from opk_sign.cli.options import add_registry_options, registry_client
from opk_sign.errors import printable

if TYPE_CHECKING:
    from opk_sign.oci.copy import CopyReport


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "copy",
        help="copy an image with its signatures and attestations to another repository",
        description="Copy an image (all platforms) and all its referrers, recursively, between "
        "repositories or registries. Manifests are copied byte for byte, so signatures stay "
        "valid; referrers are listed on the destination with its referrers API, or the referrers "
        "tag fallback where it has none. A signature names the repository it was made for: "
        "verify a copy in another repository with --signed-repository SRC-REPOSITORY (the "
        "command is printed).",
    )
    parser.add_argument("source", metavar="SRC", help="image to copy (name[:tag][@digest])")
    parser.add_argument("destination", metavar="DST", help="where to copy it (name[:tag])")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    add_registry_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from opk_sign.oci.copy import copy_image
    from opk_sign.oci.reference import Reference

    source = Reference.parse(args.source)
    destination = Reference.parse(args.destination)
    with registry_client(args, destination.registry) as client:
        report = copy_image(client, source, destination)
    moved = source.name != destination.name
    command = (
        f"opk-sign verify {destination.name}@{report.digest} "
        f"--signed-repository {source.name} --repository {_claimed_signer(report)}"
    )
    if args.output == "json":
        document = {
            "source": str(report.source),
            "destination": str(report.destination.repo()),
            "digest": report.digest,
            "manifests": report.manifests,
            "referrers": report.referrer_digests,
            "blobsCopied": report.blobs_copied,
            "blobsMounted": report.blobs_mounted,
            "blobsPresent": report.blobs_present,
            "bytesCopied": report.bytes_copied,
        }
        if moved:
            document["signedRepository"] = source.name
            document["verifyCommand"] = command
        print(json.dumps(document, indent=2))
    else:
        print(printable(report.summary()))
        if moved:
            # The signatures name the repository they were made for: the copy verifies when the
            # verifier is told where it was signed, and by whom (which the copy cannot know).
            print(
                f"signatures name {source.name}; verify the copy with:\n  {command}\n"
                "  (--repository: the signer the signatures claim, unverified, or OWNER/REPO when "
                "they claim several: require the one you trust)"
            )
    return 0


#: What an unsigned repository hint must look like to be shown (GitHub owner/repository).
_HINT = re.compile(r"[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}")


def _claimed_signer(report: CopyReport) -> str:
    """The signer repository the signatures' annotations claim, when they all claim one; else a
    placeholder. Only a hint for the command shown (verification checks the signed PK token):
    where several signers are claimed, the user must say which one they trust."""
    from opk_sign.bundle import ANNOTATION_REPOSITORY, SIGNATURE_ARTIFACT_TYPE

    claimed = {
        referrer.annotations.get(ANNOTATION_REPOSITORY, "")
        for referrer in report.top_referrers
        if referrer.artifact_type == SIGNATURE_ARTIFACT_TYPE
    }
    if len(claimed) == 1:
        (only,) = claimed
        if _HINT.fullmatch(only):
            return only
    return "OWNER/REPO"
