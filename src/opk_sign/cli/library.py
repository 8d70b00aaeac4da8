"""``opk-sign library verify|sign FILE``: every tag of a bashbrew library file, in one batch.

A library file (docker-library/official-images ``library/<name>``) says what each Docker Official
Image tag is: the entries' ``Tags`` and ``SharedTags``, their ``Architectures`` and, per
architecture, the ``GitRepo`` and ``GitCommit`` it is built from (docs/official-images.md).

- ``verify``: each distinct tag once (``REGISTRY/NAMESPACE/NAME:TAG``, NAME the file's name unless
  ``--name``), against the identity policy, and each platform's BuildKit SLSA provenance against
  its entry's ``GitRepo`` at its ``GitCommit`` (a shared tag: any entry sharing it); every
  architecture the file lists must be in the image. Exit code: the worst tag's (ADR 0002).
- ``sign``: each tag resolved to its digest now, each distinct digest signed once with one key,
  one ID token and one PK token (``sign --images-from``); the report names, per tag, what was and
  was not signed. Exit code: the first failure's.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opk_sign.cli.options import (
    add_policy_options,
    add_registry_options,
    add_signing_options,
    add_trust_options,
)
from opk_sign.errors import EXIT_OK, UsageError, printable

if TYPE_CHECKING:
    from opk_sign.library.bashbrew import LibraryFile, TagPlan
    from opk_sign.payloads.buildkit import PlatformSources
    from opk_sign.verify.options import OptionsFor, VerifyOptions
    from opk_sign.verify.outcome import ImageResult

HELP = "verify or sign every tag of a Docker Official Images (bashbrew) library file"

EPILOG = """\
exit codes (verify: the worst tag's; sign: the first failure's):
  0   every tag verified (signed)
  2   usage: a malformed library file (the line is named), bad arguments, no policy
  10  a tag has no signatures
  11  a tag is signed, but not by the policy's signer, or its provenance does not name its
      entry's GitRepo at its GitCommit, or it lacks an architecture the file lists
  12  signatures present but none valid
  13  registry or network error  ·  14 trust material error  ·  15 a tag does not exist

sign takes `opk-sign sign`'s signing options and environment (OPK_SIGN_OIDC_ISSUER,
OPK_SIGN_TIMESTAMP_URL, OPK_SIGN_TLOG, OPK_SIGN_TLOG_URL): by default (--tlog auto) a public
repository's signatures are logged in the transparency log, as `sign` logs them

examples:
  opk-sign library verify library/busybox --repository docker-library/busybox
  opk-sign library verify library/busybox --registry ghcr.io --namespace octo-org \\
      --policy doi-policy.yml --output json
  opk-sign library sign library/busybox --registry ghcr.io --namespace octo-org
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "library",
        help=HELP,
        description=(
            "Read a bashbrew library file strictly (unknown fields and malformed entries are "
            "refused with their line) and verify or sign every tag and architecture it defines, "
            "in one batch."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="library_command", metavar="COMMAND", required=True)
    verify = commands.add_parser(
        "verify",
        help="verify every tag: signer, provenance (GitRepo at GitCommit), architectures",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(verify)
    add_policy_options(verify)
    add_trust_options(verify)
    verify.add_argument(
        "--summary",
        type=Path,
        metavar="FILE",
        help="append a Markdown table of the tags to FILE (e.g. $GITHUB_STEP_SUMMARY)",
    )
    add_registry_options(verify)
    verify.set_defaults(
        func=run_verify, platform=None, attestation=[], source_repository=None, source_commit=None
    )
    sign = commands.add_parser(
        "sign",
        help="sign every tag with one key, one ID token and one PK token",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(sign)
    sign.add_argument(
        "--no-provenance",
        dest="provenance",
        action="store_false",
        help="do not attach opk-sign's own SLSA provenance (BuildKit's stays in the index)",
    )
    sign.add_argument(
        "--summary",
        type=Path,
        metavar="FILE",
        help="append a Markdown table of the tags to FILE (e.g. $GITHUB_STEP_SUMMARY)",
    )
    add_signing_options(sign)  # `sign`'s own: the same flags, defaults and environment
    add_registry_options(sign)
    sign.set_defaults(func=run_sign)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, metavar="FILE", help="the library file")
    parser.add_argument(
        "--registry", default="docker.io", help="the registry the images are in (docker.io)"
    )
    parser.add_argument(
        "--namespace", default="library", help="the namespace of the repository (library)"
    )
    parser.add_argument("--name", help="the repository name (default: the file's name)")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")


# --- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tagged:
    plan: TagPlan
    image: str


def read_library(args: argparse.Namespace) -> tuple[LibraryFile, list[Tagged]]:
    from opk_sign.library.bashbrew import MAX_BYTES, parse_library
    from opk_sign.oci.reference import Reference

    path: Path = args.file
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except OSError as err:
        raise UsageError(f"cannot read the library file {path}: {err.strerror}") from None
    library = parse_library(data, str(path))
    name = args.name or path.name
    repository = f"{args.registry}/{args.namespace}/{name}" if args.namespace else name
    tagged = [Tagged(plan, f"{repository}:{plan.tag}") for plan in library.tags()]
    Reference.parse(tagged[0].image)  # a bad --registry/--namespace/--name: a usage error
    return library, tagged


# --- verify --------------------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    from opk_sign.cli.options import registry_client, verify_options
    from opk_sign.oci.reference import Reference
    from opk_sign.verify.image import verify_images

    _, tagged = read_library(args)
    base = verify_options(args)
    by_image = {t.image: t for t in tagged}

    def options_for_tag(image: str) -> VerifyOptions:
        chosen = base if not callable(base) else base(image)
        return replace(chosen, source=sources_of(by_image[image].plan))

    chooser: OptionsFor = options_for_tag
    registry = Reference.parse(tagged[0].image).registry
    with registry_client(args, registry) as client:
        results = [
            missing_architectures(by_image[r.image].plan, r)
            for r in verify_images([t.image for t in tagged], chooser, client=client)
        ]
    return report_verify(args, tagged, results)


def sources_of(plan: TagPlan) -> PlatformSources:
    """The per-platform provenance requirement of a tag: its entries' GitRepo at GitCommit."""
    from opk_sign.payloads.buildkit import PlatformSources as Sources
    from opk_sign.payloads.buildkit import SourceRequirement

    return Sources(
        {
            platform: tuple(
                dict.fromkeys(SourceRequirement(s.repository, s.commit) for _, s in alternatives)
            )
            for platform, alternatives in plan.platforms.items()
        }
    )


def missing_architectures(plan: TagPlan, result: ImageResult) -> ImageResult:
    """A verified tag must hold every architecture its entries list (a plain manifest: the one
    its config names, so it satisfies an entry listing that architecture alone)."""
    from opk_sign.payloads.buildkit import platform_key
    from opk_sign.verify.outcome import Outcome

    if not result.verified:
        return result
    have = {platform_key(m.platform) for m in result.manifests if m.platform}
    missing = [p for p in plan.platforms if platform_key(p) not in have]
    if not missing:
        return result
    return replace(
        result,
        outcome=Outcome.POLICY_MISMATCH,
        message=f"the image lacks architectures the library file lists: {', '.join(missing)}",
    )


def report_verify(
    args: argparse.Namespace, tagged: list[Tagged], results: list[ImageResult]
) -> int:
    from opk_sign.verify.outcome import Outcome, format_result

    worst = Outcome.worst(r.outcome for r in results)
    if args.output == "json":
        print(
            json.dumps(
                {
                    "library": str(args.file),
                    "exitCode": worst.exit_code,
                    "tags": [
                        {
                            "tag": t.plan.tag,
                            "entries": t.plan.lines,
                            "image": t.image,
                            "result": r.to_dict(),
                        }
                        for t, r in zip(tagged, results, strict=True)
                    ],
                },
                indent=2,
            )
        )
    else:
        for t, r in zip(tagged, results, strict=True):
            where = ", ".join(str(line) for line in t.plan.lines)
            print(f"{t.plan.tag} (entry at line {where}):")
            print("  " + printable(format_result(r)).replace("\n", "\n  "))
    verified = sum(r.verified for r in results)
    print(f"{verified} of {len(results)} tags verified", file=sys.stderr)
    if args.summary is not None:
        rows = [
            (t.plan.tag, t.plan.lines, ", ".join(t.plan.platforms), r.outcome.label, r.digest)
            for t, r in zip(tagged, results, strict=True)
        ]
        write_summary(args.summary, f"Verified {verified} of {len(results)} tags", rows)
    return worst.exit_code


def write_summary(
    path: Path, title: str, rows: list[tuple[str, list[int], str, str, str | None]]
) -> None:
    lines = [
        f"### {title}",
        "",
        "| tag | entry (line) | platforms | outcome | digest |",
        "| --- | --- | --- | --- | --- |",
    ]
    for tag, entry_lines, platforms, outcome, digest in rows:
        lines.append(
            f"| `{tag}` | {', '.join(map(str, entry_lines))} | {platforms} | {outcome} "
            f"| {f'`{digest}`' if digest else '-'} |"
        )
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n\n")
    except OSError as err:
        raise UsageError(f"cannot write the summary to {path}: {err.strerror}") from None


# --- sign ----------------------------------------------------------------------------------------


def run_sign(args: argparse.Namespace) -> int:
    from opk_sign.cli.options import registry_client, signing
    from opk_sign.errors import ImageNotFoundError, NotFoundError, OpkSignError
    from opk_sign.oci.reference import Reference
    from opk_sign.sign.batch import sign_images

    provider, options = signing(args, provenance=args.provenance)  # usage errors first
    _, tagged = read_library(args)
    registry = Reference.parse(tagged[0].image).registry
    digests: dict[str, str] = {}
    errors: dict[str, OpkSignError] = {}
    with registry_client(args, registry) as client:
        for t in tagged:  # what each tag names now: each digest is signed once
            reference = Reference.parse(t.image)
            try:
                descriptor, _ = client.pull_manifest(reference)
            except NotFoundError as err:
                errors[t.image] = ImageNotFoundError(f"{t.image}: no such image ({err.message})")
                continue
            except OpkSignError as err:
                errors[t.image] = err
                continue
            digests[t.image] = f"{reference.name}@{descriptor.digest}"
        pinned = list(dict.fromkeys(digests.values()))
        batch = (
            sign_images(pinned, provider=provider, client=client, options=options)
            if pinned
            else None
        )
    outcome = {item.image: item for item in (batch.images if batch else ())}
    rows: list[dict[str, Any]] = []
    exit_code = EXIT_OK
    for t in tagged:
        error = errors.get(t.image)
        item = outcome.get(digests.get(t.image, ""))
        if error is None and item is not None and item.error is not None:
            error = item.error
        row: dict[str, Any] = {"tag": t.plan.tag, "entries": t.plan.lines, "image": t.image}
        if error is not None:
            row.update(signed=False, error=error.message, exitCode=error.exit_code)
            exit_code = exit_code or error.exit_code
        else:
            assert item is not None and item.result is not None
            row.update(signed=True, digest=item.result.digest, exitCode=EXIT_OK)
        rows.append(row)
    if args.output == "json":
        print(
            json.dumps({"library": str(args.file), "exitCode": exit_code, "tags": rows}, indent=2)
        )
    else:
        for row in rows:
            mark = "signed    " if row["signed"] else "NOT SIGNED"
            detail = row.get("digest") or f"{row['error']} (exit {row['exitCode']})"
            print(printable(f"{mark} {row['tag']} (entry at line {row['entries'][0]}): {detail}"))
    signed = sum(row["signed"] for row in rows)
    print(f"{signed} of {len(rows)} tags signed", file=sys.stderr)
    if args.summary is not None:
        write_summary(
            args.summary,
            f"Signed {signed} of {len(rows)} tags",
            [
                (
                    row["tag"],
                    row["entries"],
                    ", ".join(next(t.plan.platforms for t in tagged if t.plan.tag == row["tag"])),
                    "signed" if row["signed"] else f"not signed (exit {row['exitCode']})",
                    row.get("digest"),
                )
                for row in rows
            ],
        )
    return exit_code
