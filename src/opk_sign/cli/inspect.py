"""``opk-sign inspect IMAGE``: the tree of an image and of every referrer, like ``cosign tree``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from opk_sign.cli.options import add_registry_options, registry_client
from opk_sign.errors import printable


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "inspect",
        help="show an image's manifests and every referrer (signatures, attestations)",
        description="Show the tree of an image: its index, its platform manifests, and the "
        "referrers of each (artifact type, annotations, digest), found with the referrers API "
        "or the referrers tag fallback.",
    )
    parser.add_argument("image", metavar="IMAGE", help="image reference (name[:tag][@digest])")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    add_registry_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from opk_sign.oci.inspect import inspect_image
    from opk_sign.oci.reference import Reference

    ref = Reference.parse(args.image)
    with registry_client(args, ref.registry) as client:
        tree = inspect_image(client, ref)
    if args.output == "json":
        print(json.dumps(tree.to_dict(image=args.image), indent=2, sort_keys=False))
    else:
        print(printable(tree.render()))
    return 0
