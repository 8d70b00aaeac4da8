"""``opk-sign copy SRC DST``: copy an image, every platform, with all its referrers."""

from __future__ import annotations

import argparse
import json
from typing import Any

from opk_sign.cli.options import add_registry_options, registry_client
from opk_sign.oci.copy import copy_image
from opk_sign.oci.reference import Reference


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "copy",
        help="copy an image with its signatures and attestations to another repository",
        description="Copy an image (all platforms) and all its referrers, recursively, between "
        "repositories or registries. Manifests are copied byte for byte, so signatures stay "
        "valid; referrers are listed on the destination with its referrers API, or the referrers "
        "tag fallback where it has none.",
    )
    parser.add_argument("source", metavar="SRC", help="image to copy (name[:tag][@digest])")
    parser.add_argument("destination", metavar="DST", help="where to copy it (name[:tag])")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    add_registry_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    source = Reference.parse(args.source)
    destination = Reference.parse(args.destination)
    with registry_client(args, destination.registry) as client:
        report = copy_image(client, source, destination)
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
        print(json.dumps(document, indent=2))
    else:
        print(report.summary())
    return 0
