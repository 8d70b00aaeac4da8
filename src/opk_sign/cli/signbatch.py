"""``opk-sign sign --images-from FILE``: many images, one key, one ID token, one PK token.

Not a subcommand of its own: ``cli/sign.py`` hands a run with ``--images-from`` here. Each image is
reported on its own (text: the image's summary or its error; json: one line per image, a
``sign --output json`` document for a signed image, ``{"image", "signed": false, "error",
"exitCode"}`` for one that was not); the summary on stderr names what was and was not signed. The
exit code is the first failed image's (ADR 0002: signing exits with its first cause's code).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opk_sign.errors import UsageError, printable

if TYPE_CHECKING:
    from opk_sign.oidc import TokenProvider
    from opk_sign.sign.batch import BatchSigning, ImageSigning
    from opk_sign.sign.image import SigningOptions, SigningResult


def run_batch(
    args: argparse.Namespace,
    provider: TokenProvider,
    options: SigningOptions,
    format_result: Callable[[SigningResult], str],
) -> int:
    from opk_sign.cli.options import registry_client
    from opk_sign.cli.verify import _image_lines
    from opk_sign.oci.reference import Reference
    from opk_sign.sign.batch import sign_images

    images = list(_image_lines(args.images_from))
    if not images:
        raise UsageError(f"--images-from {args.images_from}: no images listed")
    registry = Reference.parse(images[0]).registry
    with registry_client(args, registry) as client:
        batch = sign_images(
            images,
            provider=provider,
            client=client,
            options=options,
            # A large batch on every core (16 images per process at least): forked copies of
            # this process, each with a registry client of its own (sign.batch); the key never
            # leaves memory.
            processes=os.cpu_count() or 1,
            client_factory=lambda: registry_client(args, registry),
        )
    print_batch(batch, args.output, format_result)
    return batch.exit_code


def image_document(item: ImageSigning) -> dict[str, Any]:
    """One image's line of ``--output json``."""
    if item.result is not None:
        document: dict[str, Any] = item.result.to_dict(image=item.image)
        return document
    assert item.error is not None
    return {
        "image": item.image,
        "signed": False,
        "error": item.error.message,
        "exitCode": item.error.exit_code,
    }


def print_batch(
    batch: BatchSigning, output: str, format_result: Callable[[SigningResult], str]
) -> None:
    for item in batch.images:
        if output == "json":
            print(json.dumps(image_document(item), separators=(",", ":")))
        elif item.result is not None:
            print(printable(format_result(item.result)))
        else:
            assert item.error is not None
            print(printable(f"NOT SIGNED {item.image} (exit {item.error.exit_code})"))
            diagnostics = printable(item.error.diagnostics())
            print("\n".join("  " + line for line in diagnostics.splitlines()))
    print(batch.summary(), file=sys.stderr)
