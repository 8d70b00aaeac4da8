"""Reporting verification to GitHub Actions, pure: workflow commands and step-summary Markdown.

Everything here returns text; the callers (the verify action, ``opk-sign pr-check``) print it or
append it to ``$GITHUB_STEP_SUMMARY``. Values that reach a runner can come from a pull request
(file names, image names, a registry's error text), so each is escaped for where it goes:

- workflow commands (``::error file=…,line=…,title=…::message``) by GitHub's rules: in the message
  ``%`` → ``%25``, CR → ``%0D``, LF → ``%0A``; in a property also ``:`` → ``%3A`` and ``,`` →
  ``%2C``, so a file named ``a,line=1`` cannot add a property and no value can end the command;
- Markdown table cells as HTML text (``<``, ``>``, ``&``, quotes), ``|`` as ``&#124;`` and line
  breaks as ``<br>``, so a value can neither inject markup nor break the table.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opk_sign.oci.reference import image_key
from opk_sign.prcheck.dockerfile import Problem
from opk_sign.prcheck.findings import Finding
from opk_sign.verify.outcome import ImageResult, tally

#: Longest message kept in one annotation; the step summary and the log keep the whole text.
MAX_ANNOTATION_CHARS: Final = 4000
#: Longest first line shown as a <details> summary.
MAX_SUMMARY_LINE: Final = 100


# --- workflow commands ----------------------------------------------------------------------------


def escape_data(text: str) -> str:
    """A workflow command's message (GitHub's ``escapeData``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A workflow command's property value (GitHub's ``escapeProperty``)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(
    command: str, message: str, properties: Mapping[str, str | int | None] | None = None
) -> str:
    """``::command k=v,k=v::message``; properties whose value is None or empty are left out."""
    props = ",".join(
        f"{key}={escape_property(str(value))}"
        for key, value in (properties or {}).items()
        if value is not None and value != ""
    )
    return f"::{command}{' ' + props if props else ''}::{escape_data(message)}"


def error_annotation(
    message: str, *, title: str, file: str | None = None, line: int | None = None
) -> str:
    """An ``::error`` annotation, at ``file``:``line`` when given (shown on the PR's diff)."""
    if len(message) > MAX_ANNOTATION_CHARS:
        message = message[: MAX_ANNOTATION_CHARS - 1] + "…"
    return workflow_command("error", message, {"file": file, "line": line, "title": title})


def untrusted_block(lines: Sequence[str], token: str) -> list[str]:
    """``lines`` between ``::stop-commands::token`` and ``::token::``: the runner takes nothing
    in them for a workflow command. ``token`` must be unguessable (``secrets.token_hex``)."""
    return [f"::stop-commands::{token}", *lines, f"::{token}::"]


# --- Markdown -------------------------------------------------------------------------------------


def md_text(text: str) -> str:
    """Text for a Markdown table cell or HTML block: escaped, on one line."""
    escaped = html.escape(text, quote=True).replace("|", "&#124;")
    return "<br>".join(escaped.splitlines())


def md_code(text: str) -> str:
    return f"<code>{md_text(text)}</code>" if text else ""


def md_details(summary: str, body: str) -> str:
    """A folded block inside one table cell."""
    return f"<details><summary>{md_text(summary)}</summary>{md_text(body)}</details>"


def parse_multiline(value: str) -> list[str]:
    """The lines of a multiline input or list file: stripped, without blanks and ``#`` comments."""
    lines = []
    for line in value.splitlines():
        item = line.split("#", 1)[0].strip()
        if item:
            lines.append(item)
    return lines


# --- verification results ---------------------------------------------------------------------


@dataclass(frozen=True)
class ResultRow:
    """One line of a verification table: a result, and where the image was named (if known)."""

    result: ImageResult
    where: str | None = None


def result_document(result: ImageResult) -> dict[str, Any]:
    """``opk-sign verify --output json``'s document, without the per-bundle details (outputs are
    limited in size)."""
    doc = result.to_dict()
    for manifest in doc["manifests"]:
        manifest.pop("bundles", None)
    return doc


def outcome_text(result: ImageResult) -> str:
    if result.verified:
        return "✅ verified"
    return f"❌ {result.outcome.label} ({result.exit_code})"


def short_digest(digest: str | None) -> str:
    if not digest:
        return ""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}…" if len(hexpart) > 12 else digest


def details_text(result: ImageResult) -> str:
    """The whole story of one image, for the folded cell: message, digest, signer claims."""
    parts = [result.message]
    if result.digest:
        parts.append(f"digest: {result.digest}")
    for claim, value in result.identity.items():
        parts.append(f"{claim}: {value}")
    return "\n".join(parts)


def verification_table(rows: Sequence[ResultRow], *, where_column: bool = False) -> list[str]:
    """A Markdown table, a row per result: image, digest, outcome, signer, details."""
    head = ["Image", "Digest", "Outcome", "Signer repository", "Signer workflow", "Details"]
    if where_column:
        head.insert(0, "Where")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        result = row.result
        identity = result.identity
        first = result.message.splitlines()[0] if result.message else result.outcome.label
        if len(first) > MAX_SUMMARY_LINE:
            first = first[: MAX_SUMMARY_LINE - 1] + "…"
        cells = [
            md_code(result.image),
            md_code(short_digest(result.digest)),
            outcome_text(result),
            md_code(str(identity.get("repository", ""))),
            md_code(str(identity.get("job_workflow_ref", ""))),
            md_details(first, details_text(result)),
        ]
        if where_column:
            cells.insert(0, md_code(row.where or ""))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


# --- the pull-request check ----------------------------------------------------------------------


def pr_check_annotations(found: Sequence[Finding], problems: Sequence[Problem]) -> list[str]:
    """``::error file=…,line=…`` for every failed image at every place, and every problem."""
    lines = []
    for problem in problems:
        lines.append(
            error_annotation(
                problem.message,
                title="opk-sign: cannot tell which image this is",
                file=problem.path,
                line=problem.line,
            )
        )
    for finding in found:
        result = finding.result
        if result.verified:
            continue
        lines.append(
            error_annotation(
                f"{finding.use.image}: {result.message}",
                title=f"opk-sign: image not verified ({result.outcome.label})",
                file=finding.use.path,
                line=finding.use.line,
            )
        )
    return lines


def pr_check_summary(found: Sequence[Finding], problems: Sequence[Problem]) -> str:
    """The step summary: a row per place an image is named, then the problems."""
    lines = ["### opk-sign: images this change brings in", ""]
    if not found and not problems:
        lines += ["No images to verify: no `FROM` (or listed image) in the files checked.", ""]
        return "\n".join(lines)
    distinct = {image_key(f.result.image): f.result for f in found}
    failed = sum(not f.result.verified for f in found)
    lines.append(
        f"{tally(distinct.values())}; {failed} failing place{'s' * (failed != 1)}"
        + (f"; {len(problems)} problem{'s' * (len(problems) != 1)}" if problems else "")
    )
    lines.append("")
    if found:
        rows = [ResultRow(f.result, f.use.where) for f in found]
        lines += verification_table(rows, where_column=True)
        lines.append("")
    if problems:
        lines += ["| Where | Problem |", "| --- | --- |"]
        lines += [f"| {md_code(p.where)} | {md_text(p.message)} |" for p in problems]
        lines.append("")
    return "\n".join(lines)
