"""`opk-sign pr-check`: verify the images a change brings in, reported where they are named."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from opk_sign.cli.options import add_registry_options, add_verification_options, path_argument
from opk_sign.errors import UsageError, printable

if TYPE_CHECKING:
    from opk_sign.prcheck.dockerfile import Scan
    from opk_sign.prcheck.findings import Finding
    from opk_sign.verify.outcome import ImageResult

EPILOG = """\
exit codes (the verify contract; the highest of all images wins):
  0   every image brought in is verified (or there is none)
  2   usage: bad arguments or policy, or a FROM whose image cannot be told (an ARG without a
      default), reported at its file and line
  10  an image without signatures        11  signed, but not by a signer the policy accepts
  12  signatures present, none valid     13  registry or network error (outcome unknown)
  14  trust material error                 15  an image that does not exist

examples:
  opk-sign pr-check --base origin/main --policy .github/opk-sign-policy.yml
  opk-sign pr-check --dockerfile Dockerfile build/Dockerfile.ci --repository octo-org/base-images
  opk-sign pr-check --all-dockerfiles --images-file images.txt --owner octo-org
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "pr-check",
        help="verify the images a change's Dockerfiles bring in (the pull-request check)",
        description=(
            "Collect the images that Dockerfiles bring in (every FROM that is neither scratch "
            "nor an earlier stage, COPY --from and RUN --mount from= images, ARG defaults "
            "substituted) and the images of a list file, verify each distinct image once "
            "against the identity policy, and report every failure at the file and line that "
            "names the image (as ::error annotations when run in GitHub Actions). See "
            "docs/verify-action.md."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = parser.add_argument_group("what to check")
    what.add_argument(
        "--base",
        metavar="REF",
        help="the Dockerfiles changed since REF: git diff --diff-filter=d REF...HEAD (needs the "
        "history: actions/checkout with fetch-depth: 0)",
    )
    what.add_argument(
        "--dockerfile",
        action="extend",
        nargs="+",
        default=[],
        metavar="FILE",
        help="these Dockerfiles (repeatable)",
    )
    what.add_argument(
        "--all-dockerfiles",
        action="store_true",
        help="every Dockerfile git tracks (e.g. on push, where there is no base)",
    )
    what.add_argument(
        "--images-file",
        type=path_argument,
        metavar="FILE",
        help="also these images: one per line, # comments",
    )
    add_verification_options(parser)
    out = parser.add_argument_group("output")
    out.add_argument(
        "--annotations",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print ::error file=…,line=… workflow commands (default: in GitHub Actions, i.e. "
        "when GITHUB_ACTIONS=true); the step summary and outputs go to $GITHUB_STEP_SUMMARY "
        "and $GITHUB_OUTPUT when those are set",
    )
    out.add_argument(
        "--jobs",
        type=int,
        default=None,
        metavar="N",
        help="images verified in parallel (default: 16)",
    )
    add_registry_options(parser)
    parser.set_defaults(func=run)


# --- which files --------------------------------------------------------------------------------


def _git(args: Sequence[str], cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=120
        )
    except FileNotFoundError:
        raise UsageError(
            "git is not installed (pr-check --base and --all-dockerfiles need it)"
        ) from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"git {' '.join(args)} took too long") from None
    if done.returncode != 0:
        raise UsageError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def repository_root() -> Path | None:
    try:
        return Path(_git(["rev-parse", "--show-toplevel"]).strip())
    except UsageError:
        return None


def changed_dockerfiles(base: str, root: Path) -> list[str]:
    """The Dockerfiles added or modified in BASE...HEAD (paths relative to the repository)."""
    if base.startswith("-"):
        raise UsageError(f"--base {base!r} looks like an option, not a git revision")
    try:
        # -z: file names as they are, whatever characters they hold.
        out = _git(
            ["diff", "--name-only", "--diff-filter=d", "-z", "--end-of-options", f"{base}...HEAD"],
            cwd=root,
        )
    except UsageError as err:
        raise UsageError(
            err.message,
            hint="the base must be in the clone: check out with `fetch-depth: 0` "
            "(actions/checkout) or fetch the base branch first",
        ) from None
    from opk_sign.prcheck.dockerfile import is_dockerfile

    return [path for path in out.split("\0") if path and is_dockerfile(path)]


def tracked_dockerfiles(root: Path) -> list[str]:
    from opk_sign.prcheck.dockerfile import is_dockerfile

    out = _git(["ls-files", "-z"], cwd=root)
    return [path for path in out.split("\0") if path and is_dockerfile(path)]


def display_path(path: Path, root: Path | None) -> str:
    """A path as GitHub places annotations: relative to the repository root when inside it."""
    if root is not None:
        try:
            return path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return path.as_posix()


#: The largest Dockerfile or image list read (the largest real Dockerfiles are tens of KiB).
MAX_FILE_BYTES = 1024 * 1024


def _read(path: Path, what: str) -> str:
    """A file of the change, read as hostile: a regular file (a symlink committed to
    /dev/zero or to a runner's file is not followed), at most MAX_FILE_BYTES, UTF-8."""
    from opk_sign.errors import FormatError
    from opk_sign.oci.layout import read_regular_file

    try:
        return read_regular_file(path, MAX_FILE_BYTES, what).decode("utf-8")
    except FormatError as err:
        raise UsageError(
            f"cannot read {what} {path}: {err.message}",
            hint="a Dockerfile is checked as a regular file of at most 1 MiB, never through a "
            "symbolic link: name the file a link points to",
        ) from None
    except UnicodeDecodeError as err:
        raise UsageError(f"cannot read {what} {path}: not UTF-8 ({err.reason})") from None


# --- running ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from opk_sign.cli.options import registry_client, verify_options
    from opk_sign.prcheck.dockerfile import Scan, scan_dockerfile, scan_image_list
    from opk_sign.prcheck.findings import distinct_images, exit_code, findings
    from opk_sign.verify.image import DEFAULT_JOBS, verify_images

    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if not (args.base or args.dockerfile or args.all_dockerfiles or args.images_file):
        raise UsageError(
            "nothing to check",
            hint="give --base REF (the files a change touches), --dockerfile FILE..., "
            "--all-dockerfiles or --images-file FILE",
        )
    options = verify_options(args)  # a bad policy is a usage error before anything is read
    root = repository_root()
    files: dict[str, Path] = {}
    if args.base or args.all_dockerfiles:
        if root is None:
            raise UsageError("--base and --all-dockerfiles need a git repository")
        listed = changed_dockerfiles(args.base, root) if args.base else tracked_dockerfiles(root)
        files.update((name, root / name) for name in listed)
    for given in args.dockerfile:
        files.setdefault(display_path(Path(given), root), Path(given))
    scans = [scan_dockerfile(_read(path, "Dockerfile"), name) for name, path in files.items()]
    if args.images_file is not None:
        name = display_path(args.images_file, root)
        scans.append(scan_image_list(_read(args.images_file, "--images-file"), name))
    scan = Scan.merge(scans)
    images = distinct_images(scan.uses)
    results: list[ImageResult] = []
    if images:
        with registry_client(args, _registry_of(images[0])) as client:
            results = list(
                verify_images(images, options, client=client, jobs=args.jobs or DEFAULT_JOBS)
            )
    found = findings(scan.uses, results)
    report(args, sorted(files), found, scan, results, env=os.environ)
    return exit_code(found, scan.problems)


def _registry_of(image: str) -> str:
    from opk_sign.oci.reference import Reference

    try:
        return Reference.parse(image).registry
    except Exception:
        return ""  # reported per image


def report(
    args: argparse.Namespace,
    files: Sequence[str],
    found: Sequence[Finding],
    scan: Scan,
    results: Sequence[ImageResult],
    *,
    env: Mapping[str, str],
) -> None:
    """The text report, then annotations, the step summary and the outputs (in Actions)."""
    from opk_sign.actions import runner
    from opk_sign.actions.report import pr_check_annotations, pr_check_summary, result_document
    from opk_sign.prcheck.findings import report_lines

    annotate = args.annotations
    if annotate is None:
        annotate = env.get("GITHUB_ACTIONS") == "true"
    head = f"checked {len(files)} Dockerfile{'s' * (len(files) != 1)}" + (
        f": {', '.join(files)}" if files else ""
    )
    lines = [head, *report_lines(found, scan.problems)]
    if annotate:
        runner.print_untrusted(lines)
        for line in pr_check_annotations(found, scan.problems):
            print(line)
    else:
        print(printable("\n".join(lines)))
    sys.stdout.flush()
    runner.append_summary(pr_check_summary(found, scan.problems), env)
    if env.get("GITHUB_OUTPUT"):
        documents = []
        for result in results:
            doc = result_document(result)
            doc["places"] = [
                {"file": f.use.path, "line": f.use.line, "how": f.use.how}
                for f in found
                if f.result is result
            ]
            documents.append(doc)
        failed = [r.image for r in results if not r.verified]
        runner.set_outputs(
            {
                "verified": "false" if failed or scan.problems else "true",
                "failed-images": json.dumps(failed),
                "results": json.dumps(documents),
            }
        )
