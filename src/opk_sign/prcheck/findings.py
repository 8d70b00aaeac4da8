"""The pull-request check's verdicts, pure: each distinct image verified once, its result mapped
back to every place that named it, and the exit code of the whole check."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from opk_sign.errors import EXIT_OK, EXIT_USAGE
from opk_sign.oci.reference import image_key
from opk_sign.prcheck.dockerfile import ImageUse, Problem
from opk_sign.verify.outcome import ImageResult, tally, worst_exit_code


def distinct_images(uses: Sequence[ImageUse]) -> list[str]:
    """Each image once, as first spelled, in the order first named."""
    seen: dict[str, str] = {}
    for use in uses:
        seen.setdefault(image_key(use.image), use.image)
    return list(seen.values())


@dataclass(frozen=True)
class Finding:
    """The verdict on an image, at one place that names it."""

    use: ImageUse
    result: ImageResult


def findings(uses: Sequence[ImageUse], results: Iterable[ImageResult]) -> list[Finding]:
    """Each result mapped back to every file:line that named its image."""
    by_key = {image_key(r.image): r for r in results}
    return [Finding(use, by_key[image_key(use.image)]) for use in uses]


def exit_code(found: Sequence[Finding], problems: Sequence[Problem]) -> int:
    """The contract's code: the worst image outcome, and 2 for any problem (the highest wins)."""
    code = worst_exit_code(f.result for f in found) if found else EXIT_OK
    return max(code, EXIT_USAGE) if problems else code


def report_lines(found: Sequence[Finding], problems: Sequence[Problem]) -> list[str]:
    """The plain-text report, a line per place (and the reasons of failures, indented)."""
    lines = []
    for problem in problems:
        lines.append(f"PROBLEM {problem.where}: {problem.message}")
    for finding in found:
        result = finding.result
        mark = "OK  " if result.verified else "FAIL"
        lines.append(
            f"{mark} {finding.use.where}: {finding.use.image}: {result.outcome.label}"
            f" (exit {result.exit_code})"
        )
        if not result.verified:
            lines.extend("       " + text for text in result.message.splitlines())
    distinct = {image_key(f.result.image): f.result for f in found}
    lines.append(tally(distinct.values()) + (f", {len(problems)} problems" if problems else ""))
    return lines
