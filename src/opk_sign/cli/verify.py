"""`opk-sign verify IMAGE...`: prove which repository and workflow signed images."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from opk_sign.cli import signals
from opk_sign.cli.options import (
    add_registry_options,
    add_verification_options,
    path_argument,
    verify_options,
)
from opk_sign.errors import EXIT_USAGE, UsageError, printable

TYPE_CHECKING = False  # typing.TYPE_CHECKING: `verify --help` imports neither typing nor pathlib
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path
    from typing import Any, TextIO

    from opk_sign.verify.options import OptionsFor, VerifyOptions
    from opk_sign.verify.outcome import ImageResult

#: Images a --images-from file may list; a batch is a fleet, not an unbounded stream.
MAX_IMAGES = 100_000

EPILOG = """\
exit codes (stable; with several images, the highest of their codes):
  0   verified: every image has a valid signature satisfying the policy
  2   usage: bad arguments, unreadable policy file, no policy
  10  no signatures found
  11  valid signatures, none satisfying the policy (the claim that failed is named), or
      missing-attestation: signed, but no attestation of a required --attestation type
  12  signatures present but none valid (tampered, replayed from another image, unknown key)
  13  registry or network error: the outcome is unknown (never reported as unsigned)
  14  trust material error: the issuer's JWKS or the trust repository is unavailable or invalid
  15  not found: the image (name, tag or digest) does not exist

examples:
  opk-sign verify ghcr.io/octo-org/app:v1 --repository octo-org/app
  opk-sign verify ghcr.io/octo-org/app@sha256:... \\
      --signer-workflow-regex 'octo-org/app/[.]github/workflows/release[.]yml@refs/tags/v.*'
  opk-sign verify --images-from images.txt --policy policy.yml --output json
  opk-sign verify app@sha256:... --bundle sig.json --jwks github-jwks.json --repository o/app
  opk-sign verify docker.io/library/alpine:3   # the policy from the trust repository's mapping
  opk-sign verify registry.example/mirror/app:v1 --repository octo-org/app \\
      --signed-repository ghcr.io/octo-org/app     # a copy: where it was signed
  opk-sign verify --from-dir app-kit ghcr.io/octo-org/app@sha256:... --repository octo-org/app
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="verify images' signatures against an identity policy",
        description=(
            "Verify that each IMAGE carries a valid opk-sign signature whose signer (the GitHub "
            "Actions job's repository, workflow, ref ...) satisfies the identity policy. An "
            "index is verified with every platform manifest. Trust material: the issuer's live "
            "JWKS (fetched once per run) or --jwks FILE, a JWKS archive for rotated keys, trusted "
            "timestamp authorities, and the TUF trust repository installed with `opk-sign trust "
            "init`, whose mapping gives the policy of mapped names when no flags do."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="image references")
    parser.add_argument(
        "--images-from",
        type=path_argument,
        metavar="FILE",
        help="read image references from FILE, one per line (# comments; - for stdin)",
    )
    what = add_verification_options(parser)
    what.add_argument(
        "--bundle",
        type=path_argument,
        action="append",
        metavar="FILE",
        help="verify IMAGE (NAME@sha256:...) from bundle files without any registry: the "
        "signature bundle, plus an attestation bundle per --attestation TYPE (repeatable)",
    )
    what.add_argument(
        "--from-dir",
        type=path_argument,
        metavar="DIR",
        help="verify IMAGE (NAME@sha256:...) from an offline kit written by `opk-sign download`, "
        "with no network at all: its bundles, JWKS, JWKS archive and TSA certificates (--jwks, "
        "--jwks-archive, --tsa-certs override them); see docs/offline.md",
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "-o",
        "--output",
        choices=("text", "json"),
        default="text",
        help="text (default), or json: one document, or JSON lines with several images",
    )
    out.add_argument(
        "--vsa",
        type=path_argument,
        metavar="FILE",
        help="write a SLSA verification summary attestation per verified image (JSON lines)",
    )
    out.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="images verified at once, in all processes (default: 16)",
    )
    out.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="processes a batch is verified on, each with its share of --jobs: 0 or 1 for "
        "this one alone (threads only); default: one per CPU for batches of 64 distinct "
        "images or more (docs/verify.md, Batches)",
    )
    out.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="a progress bar on stderr (default: when stderr is a terminal and several images)",
    )
    add_registry_options(parser)
    parser.set_defaults(func=run)


# --- arguments to options -----------------------------------------------------------------------


def read_images(args: argparse.Namespace) -> list[str]:
    images = list(args.images)
    if args.images_from is not None:
        images.extend(_image_lines(args.images_from))
    if not images:
        raise UsageError("no images to verify", hint="give IMAGE arguments or --images-from FILE")
    if len(images) > MAX_IMAGES:
        raise UsageError(f"more than {MAX_IMAGES} images in one run")
    return images


def _image_lines(path: Path) -> Iterator[str]:
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read --images-from {path}: {err}") from None
    for line in text.splitlines():
        image = line.split("#", 1)[0].strip()
        if image:
            yield image


# --- running ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from opk_sign import deadline
    from opk_sign.cli.options import registry_client
    from opk_sign.http import DEFAULT_HTTP
    from opk_sign.verify.image import (
        DEFAULT_JOBS,
        refuse_unbundled_requirements,
        verify_bundle_offline,
        verify_images,
    )
    from opk_sign.verify.options import options_for

    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if args.workers is not None and args.workers < 0:
        raise UsageError("--workers must be 0 or more")
    images = read_images(args)
    if args.from_dir is not None:
        result, kit_options = _verify_kit(args, images)
        return report(args, [result], 1, kit_options)
    with deadline.within(args.timeout or DEFAULT_HTTP.exchange_timeout, "fetching trust data"):
        options = verify_options(args)
    if args.bundle is not None:
        if len(images) != 1:
            raise UsageError("--bundle verifies one image: give exactly one NAME@sha256:...")
        bundles = [load_bundle(path) for path in args.bundle]
        chosen = options_for(options, images[0])
        refuse_unbundled_requirements(chosen)  # usage error (2): never a silent pass
        results: Iterable[ImageResult] = [verify_bundle_offline(bundles, images[0], chosen)]
        return report(args, results, 1, options)
    jobs = args.jobs or DEFAULT_JOBS
    exchange: float = args.timeout or DEFAULT_HTTP.exchange_timeout or 60.0
    per_image = 2 * exchange
    # The run's budget: every image its own, as many rounds as the batch needs, and one more
    # exchange for the trust data fetched before the first image.
    budget = exchange + per_image * math.ceil(len(images) / jobs)
    with (
        deadline.within(budget, "verifying the images"),
        registry_client(args, _registry_of(images[0])) as client,
    ):
        results = verify_images(
            images,
            options,
            client=client,
            jobs=jobs,
            image_timeout=per_image,
            workers=args.workers,
        )
        return report(args, results, len(images), options)


def _verify_kit(
    args: argparse.Namespace, images: list[str]
) -> tuple[ImageResult, VerifyOptions | OptionsFor | None]:
    """One image from an offline kit, nothing fetched. The trust material is the kit's, unless
    any comes from outside (--jwks, --jwks-archive, --tsa-certs, an installed trust repository,
    used from its cache): then only that, none of the kit's."""
    from opk_sign.cli.options import policy_fields, requirement_options
    from opk_sign.errors import FormatError
    from opk_sign.oci.reference import Reference
    from opk_sign.pktoken.verify import StaticJWKS
    from opk_sign.verify.image import verify_image
    from opk_sign.verify.keys import jwks_from_file
    from opk_sign.verify.kit import (
        JWKS_ARCHIVE_FILE,
        JWKS_FILE,
        POLICY_FILE,
        TLOG_KEYS_FILE,
        TSA_CERTS_FILE,
        KitSource,
    )
    from opk_sign.verify.options import (
        build_policy,
        build_verify_options,
        no_policy_error,
        trust_installed,
    )
    from opk_sign.verify.outcome import ImageResult, Outcome

    if len(images) != 1 or args.bundle is not None:
        raise UsageError("--from-dir verifies one image: give exactly one NAME@sha256:...")
    (image,) = images
    if Reference.parse(image, default_tag=None).digest is None:
        raise UsageError(
            f"--from-dir needs the image by digest, not {image!r}",
            hint="give NAME@sha256:..., the digest you expect (the kit's own says nothing)",
        )
    try:
        kit = KitSource(args.from_dir)
    except FormatError as err:
        return ImageResult(image, Outcome.INVALID, err.diagnostics()), None
    with kit:
        asked = Reference.parse(image, default_tag=None).digest
        if asked not in kit.digests():
            found = ", ".join(sorted(kit.digests())) or "nothing"
            message = f"the kit in {args.from_dir} is not of {asked} (it holds {found})"
            return ImageResult(image, Outcome.NOT_FOUND, message), None
        policy = build_policy(policy_fields(args), args.policy, issuer=args.issuer)
        use_trust = args.trust_repo and trust_installed()
        if policy is None and not use_trust:
            error = no_policy_error()
            if kit.trust_file(POLICY_FILE) is not None:
                error.hint = (
                    f"the trust repository's policy for the name when it was downloaded is in "
                    f"{args.from_dir / POLICY_FILE}: give --policy with it if you trust it"
                )
            raise error
        # Trust material from outside the kit replaces the kit's whole: a kit's archive added
        # to your own --jwks would let whoever edits the kit add a key (docs/offline.md).
        external = use_trust or any((args.jwks, args.jwks_archive, args.tsa_certs))
        if external:
            keys = (
                jwks_from_file(args.jwks, args.issuer)
                if args.jwks
                else StaticJWKS(args.issuer, {"keys": []})
            )
            archive, tsa = args.jwks_archive, args.tsa_certs
        else:
            kit_jwks = kit.trust_file(JWKS_FILE)
            if kit_jwks is None:
                raise UsageError(f"the kit in {args.from_dir} has no JWKS", hint="give --jwks FILE")
            issuer = kit.issuer()
            if issuer != args.issuer:
                raise UsageError(
                    f"the kit holds the JWKS of {issuer}, not of {args.issuer}",
                    hint=f"verify with --issuer {issuer}, or give --jwks FILE",
                )
            keys = jwks_from_file(kit_jwks, args.issuer)
            archive, tsa = kit.trust_file(JWKS_ARCHIVE_FILE), kit.trust_file(TSA_CERTS_FILE)
        options = build_verify_options(
            policy=policy,
            keys=keys,
            jwks_archive_file=archive,
            tsa_certs_file=tsa,
            # --tlog-keys, else the kit's (its log keys are as trusted as its JWKS: the kit's
            # only when no trust material comes from outside).
            tlog_keys_file=args.tlog_keys or (None if external else kit.trust_file(TLOG_KEYS_FILE)),
            trust_repository=use_trust,
            offline=True,
            # The same requirements as from a registry (--source-*, --attestation ...).
            **requirement_options(args),
        )
        return verify_image(kit, image, options), options


def _registry_of(image: str) -> str:
    from opk_sign.oci.reference import Reference

    try:
        return Reference.parse(image).registry
    except Exception:
        return ""  # reported per image


def load_bundle(path: Path) -> Any:
    from opk_sign.bundle import Bundle
    from opk_sign.oci.limits import MAX_BUNDLE_BYTES

    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BUNDLE_BYTES + 1)
    except OSError as err:
        raise UsageError(f"cannot read the bundle file {path}: {err.strerror}") from None
    return Bundle.from_json(data)


def report(
    args: argparse.Namespace,
    results: Iterable[ImageResult],
    count: int,
    options: VerifyOptions | OptionsFor | None,
) -> int:
    """Print each image's outcome as soon as it is decided (in input order, flushed: a batch can
    be followed through a pipe), then the summary; the exit code is the worst outcome."""
    from opk_sign.verify.outcome import Outcome

    show_progress = args.progress
    if show_progress is None:
        show_progress = count > 1 and sys.stderr.isatty()
    done: list[ImageResult] = []
    vsa_lines: list[str] = []
    try:
        for result in results:
            with signals.deferred():  # each image reported whole: its report and its VSA
                done.append(result)
                _clear_progress(show_progress)
                print(render(args.output, result, count), flush=True)
                if args.vsa is not None and result.verified and options is not None:
                    vsa_lines.append(_vsa_line(result, options))
                if show_progress:
                    _progress(len(done), count, sum(not r.verified for r in done))
    except KeyboardInterrupt:
        # SIGINT/SIGTERM: no new image is started (the pool cancels what is queued); what was
        # decided is still reported and its VSAs written, then the interrupt's code (130/143).
        _clear_progress(show_progress)
        _finish(args, done, vsa_lines, count)
        raise
    _clear_progress(show_progress)
    _finish(args, done, vsa_lines, count)
    return Outcome.worst(r.outcome for r in done).exit_code if done else EXIT_USAGE


def render(output: str, result: ImageResult, count: int) -> str:
    """One image's report: text, or its JSON document (docs/schemas/verify.schema.json), indented
    when it is the run's only one, one line each in a batch (JSON lines)."""
    from opk_sign.verify.outcome import format_result

    if output == "json":
        return json.dumps(result.to_dict(), indent=2 if count == 1 else None)
    return printable(format_result(result))


def _finish(args: argparse.Namespace, done: list[ImageResult], vsa: list[str], count: int) -> None:
    if args.vsa is not None:
        _write_atomically(args.vsa, "".join(line + "\n" for line in vsa))
    if args.output == "text" and count > 1:
        print(printable(format_summary(done)), flush=True)


def _vsa_line(result: ImageResult, options: VerifyOptions | OptionsFor) -> str:
    from opk_sign.verify.options import options_for
    from opk_sign.verify.vsa import build_vsa

    return build_vsa(
        result, policy=options_for(options, result.image).policy.describe()
    ).raw.decode()


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write --vsa {path}: {err.strerror}") from None


def _progress(done: int, total: int, failed: int, stream: TextIO = sys.stderr) -> None:
    width = 30
    filled = width * done // total
    bar = "#" * filled + "-" * (width - filled)
    stream.write(f"\r[{bar}] {done}/{total} verified-or-failed, {failed} failed")
    stream.flush()


def _clear_progress(enabled: bool, stream: TextIO = sys.stderr) -> None:
    if enabled:
        stream.write("\r\x1b[K")
        stream.flush()


# --- text output --------------------------------------------------------------------------------


def format_summary(results: list[ImageResult]) -> str:
    rows = [(r.image, r.outcome.label, str(r.exit_code), f"{r.seconds:.2f}s") for r in results]
    head = ("IMAGE", "OUTCOME", "EXIT", "TIME")
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(4)]
    lines = ["", "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    verified = sum(r.verified for r in results)
    lines.append(f"\n{verified} of {len(results)} images verified")
    return "\n".join(lines)
