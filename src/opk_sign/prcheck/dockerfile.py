"""The pull-request check's logic, pure: which images do these Dockerfiles bring in, and where.

A Dockerfile brings in an image with every ``FROM`` that names neither ``scratch`` nor an earlier
stage, and with ``COPY --from=`` / ``RUN --mount=…,from=`` naming an image rather than a stage.
The file is read as BuildKit reads it (docs/verify-action.md, "What counts as an image"):

- parser directives (``# syntax=``, ``# escape=``) only at the very top; ``# escape=`` changes
  the line-continuation character; every other ``#`` line is a comment, also inside a continued
  instruction;
- instructions are case-insensitive and continue over lines ending in the escape character; an
  instruction's line is the line it starts on;
- ``FROM [--flag=…] IMAGE [AS name]``: stage names are case-insensitive, and only a stage defined
  *before* counts (``FROM builder`` before any ``AS builder`` pulls an image called builder);
- variables in ``FROM`` are the global ``ARG`` s declared before the first ``FROM``, with their
  defaults (``${VAR}``, ``$VAR``, ``${VAR:-word}``, ``${VAR-word}``, ``${VAR:+word}``,
  ``${VAR+word}``); ``COPY --from`` and ``RUN --mount`` also see the stage's own ``ARG`` s. A
  variable without a value (not declared, or declared without a default and no ``:-`` fallback)
  is a problem reported at its file and line, never skipped: the image it stands for would go
  unchecked;
- heredoc bodies (``RUN <<EOF`` … ``EOF``) are not instructions.

What is checked is what a build with no ``--build-arg`` would pull. Then every distinct image is
verified once and each result is reported at every place that named the image
(:mod:`opk_sign.prcheck.findings`).
"""

from __future__ import annotations

import csv
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Final

#: Names of files the check reads as Dockerfiles (case-insensitive): the base names, ``NAME.*``
#: and ``*.NAME``; ``*.dockerignore`` files next to them are not Dockerfiles.
DOCKERFILE_NAMES: Final = ("dockerfile", "containerfile")
SCRATCH: Final = "scratch"
#: How deep ``${A:-${B:-…}}`` defaults may nest (real Dockerfiles use one or two levels).
MAX_NESTING: Final = 16

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
#: The parser directives BuildKit knows; reading directives stops at any other (as it does).
_KNOWN_DIRECTIVES = frozenset({"escape", "syntax", "check"})
#: Other spellings of the syntax directive BuildKit's frontend detection reads at the top.
_SLASH_SYNTAX = re.compile(r"^//\s*syntax\s*=\s*(.+?)\s*$", re.IGNORECASE)
_INSTRUCTION = re.compile(r"^(\S+)\s*(.*)$", re.DOTALL)
#: A heredoc word, as BuildKit reads one: the whole word is ``[n]<<[-]NAME`` (NAME maybe quoted).
_HEREDOC = re.compile(r"^\d*<<(-?)(['\"]?)([^<'\"\s]+)\2$")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEREDOC_INSTRUCTIONS: Final = frozenset({"run", "copy", "add"})


def is_dockerfile(path: str) -> bool:
    """Dockerfile, Containerfile, Dockerfile.*, *.Dockerfile (and the same for Containerfile)."""
    name = PurePosixPath(path).name.lower()
    if name.endswith(".dockerignore"):
        return False
    return any(
        name == base or name.startswith(base + ".") or name.endswith("." + base)
        for base in DOCKERFILE_NAMES
    )


@dataclass(frozen=True)
class ImageUse:
    """An image named at a place: the file, the 1-based line, and how (``FROM``, ``list`` ...)."""

    image: str
    path: str
    line: int
    how: str = "FROM"

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Problem:
    """Something at a file and line that stops the check from knowing the image (exit code 2)."""

    path: str
    line: int
    message: str

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Scan:
    uses: tuple[ImageUse, ...] = ()
    problems: tuple[Problem, ...] = ()

    @staticmethod
    def merge(scans: Iterable[Scan]) -> Scan:
        uses: list[ImageUse] = []
        problems: list[Problem] = []
        for scan in scans:
            uses.extend(scan.uses)
            problems.extend(scan.problems)
        return Scan(tuple(uses), tuple(problems))


# --- reading a Dockerfile ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Instruction:
    line: int
    keyword: str  # lower case
    rest: str


@dataclass(frozen=True)
class _Directives:
    escape: str
    first: int  # the index of the first line that is not a directive
    syntax: tuple[str, int] | None  # the frontend image and its 1-based line
    problems: tuple[tuple[int, str], ...]


def _directives(lines: Sequence[str]) -> _Directives:
    """The parser directives at the top, read as BuildKit reads them: before any blank line,
    comment or instruction, and no further than the first directive it does not know (an
    ``# escape=`` after ``# foo=bar`` is a comment to BuildKit); each at most once. The
    ``syntax`` directive names the image BuildKit runs as the build's frontend.
    """
    escape, syntax = "\\", None
    seen: set[str] = set()
    problems: list[tuple[int, str]] = []
    index = 0
    while index < len(lines):
        match = _DIRECTIVE.match(lines[index].strip())
        if not match or match.group(1).lower() not in _KNOWN_DIRECTIVES:
            break
        key, value = match.group(1).lower(), match.group(2)
        if key in seen:
            problems.append((index + 1, f"the {key} parser directive is given twice"))
        seen.add(key)
        if key == "escape":
            if value in ("\\", "`"):
                escape = value
            else:
                problems.append((index + 1, f"invalid escape directive {_shorten(value)!r}"))
        elif key == "syntax":
            syntax = (value, index + 1)
        index += 1
    if syntax is None and index == 0 and lines:
        slash = _SLASH_SYNTAX.match(lines[0].strip())
        if slash:
            syntax = (slash.group(1), 1)
        elif lines[0].lstrip().startswith("{"):
            syntax = _json_syntax("\n".join(lines))
    return _Directives(escape, index, syntax, tuple(problems))


def _json_syntax(text: str) -> tuple[str, int] | None:
    """BuildKit's frontend detection also reads ``{"syntax": IMAGE}`` from a JSON file."""
    from opk_sign.errors import FormatError
    from opk_sign.jose import parse_json

    try:
        document = parse_json(text, "Dockerfile")
    except FormatError:
        return None
    syntax = document.get("syntax") if isinstance(document, dict) else None
    return (syntax, 1) if isinstance(syntax, str) and syntax else None


def _heredocs(rest: str) -> list[tuple[str, bool]]:
    """The heredocs an instruction opens: ``(terminator, strip leading tabs)`` each.

    Only a word that *is* ``<<NAME`` opens one (``echo "<<EOF"`` does not), as in BuildKit; when
    the quoting cannot be followed, none is assumed: reading a body as instructions can only find
    more images, never hide one.
    """
    lexer = shlex.shlex(rest, posix=False)
    lexer.whitespace_split = True
    lexer.commenters = ""
    try:
        words = list(lexer)
    except ValueError:
        return []
    return [
        (match.group(3), match.group(1) == "-")
        for match in (_HEREDOC.match(word) for word in words)
        if match is not None
    ]


def _instructions(
    lines: Sequence[str], escape: str, first: int
) -> tuple[list[_Instruction], list[tuple[int, str]]]:
    """Logical instructions with the line they start on, as BuildKit's parser splits them; and
    the lines where the file cannot be read as BuildKit would (an unterminated heredoc)."""
    # BuildKit's: an escape character at the end, not itself escaped (`\\\\` ends the line).
    continuation = re.compile(rf"(?<!{re.escape(escape)}){re.escape(escape)}[ \t]*$")
    instructions: list[_Instruction] = []
    heredocs: list[tuple[str, bool]] = []
    heredoc_line = 0
    start = 0
    parts: list[str] = []
    for number, raw in enumerate(lines[first:], start=first + 1):
        if heredocs:
            terminator, strip_tabs = heredocs[0]
            if (raw.lstrip("\t") if strip_tabs else raw) == terminator:
                heredocs.pop(0)
            continue
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # blank lines and comments, also inside a continued instruction
        if not parts:
            start = number
        match = continuation.search(raw)
        if match:
            parts.append(raw[: match.start()])
            continue
        parts.append(raw)
        instruction = _instruction(start, parts)
        parts = []
        if instruction is None:
            continue
        if instruction.keyword in _HEREDOC_INSTRUCTIONS:
            heredocs, heredoc_line = _heredocs(instruction.rest), start
        instructions.append(instruction)
    if parts:  # the file ends inside a continued instruction
        instruction = _instruction(start, parts)
        if instruction is not None:
            instructions.append(instruction)
    broken = []
    if heredocs:
        broken.append((heredoc_line, f"heredoc <<{heredocs[0][0]} is never terminated"))
    return instructions, broken


def _instruction(start: int, parts: Sequence[str]) -> _Instruction | None:
    match = _INSTRUCTION.match("".join(parts).strip())
    if match is None:
        return None
    return _Instruction(start, match.group(1).lower(), match.group(2))


class _Unresolvable(Exception):
    """A variable has no value a build without --build-arg would give it."""


def expand(
    word: str, variables: Mapping[str, str | None], escape: str = "\\", *, depth: int = 0
) -> str:
    """``word`` with ``$VAR`` / ``${VAR…}`` replaced; an unset variable used bare raises.

    ``variables`` maps declared names to their default, or None for "declared, no default"
    (unset unless a --build-arg gives it, which this check cannot know). ``${A:-${B:-…}}``
    nests at most :data:`MAX_NESTING` deep: a pull request's Dockerfile is hostile input.
    """
    if depth > MAX_NESTING:
        raise _Unresolvable(f"variables nested more than {MAX_NESTING} deep")
    out: list[str] = []
    i = 0
    while i < len(word):
        char = word[i]
        if char == escape and i + 1 < len(word) and word[i + 1] == "$":
            out.append("$")
            i += 2
            continue
        if char != "$":
            out.append(char)
            i += 1
            continue
        if i + 1 < len(word) and word[i + 1] == "{":
            end = _closing_brace(word, i + 2)
            out.append(_expand_braced(word[i + 2 : end], variables, escape, depth))
            i = end + 1
            continue
        match = _NAME.match(word, i + 1)
        if match is None:
            out.append("$")
            i += 1
            continue
        out.append(_value(match.group(0), variables))
        i = match.end()
    return "".join(out)


def _closing_brace(word: str, start: int) -> int:
    depth = 1
    for j in range(start, len(word)):
        if word[j] == "{":
            depth += 1
        elif word[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    raise _Unresolvable(f"unterminated ${{ in {word!r}")


def _expand_braced(body: str, variables: Mapping[str, str | None], escape: str, depth: int) -> str:
    match = _NAME.match(body)
    if match is None:
        raise _Unresolvable(f"invalid variable ${{{body}}}")
    name, rest = match.group(0), body[match.end() :]
    if not rest:
        return _value(name, variables)
    value = variables.get(name)
    for operator in (":-", ":+", "-", "+"):
        if rest.startswith(operator):
            word = rest[len(operator) :]
            empty_counts = operator.startswith(":")
            is_set = value is not None and (value != "" or not empty_counts)
            if operator.endswith("-"):
                if is_set and value is not None:
                    return value
                return expand(word, variables, escape, depth=depth + 1)
            return expand(word, variables, escape, depth=depth + 1) if is_set else ""
    raise _Unresolvable(f"${{{body}}}: only ${{VAR}}, -, :-, + and :+ are understood here")


def _value(name: str, variables: Mapping[str, str | None]) -> str:
    if name not in variables:
        raise _Unresolvable(
            f"${name} is not declared by an ARG (FROM sees only the ARGs before the first FROM)"
        )
    value = variables[name]
    if value is None:
        raise _Unresolvable(
            f"ARG {name} has no default: its value would come from --build-arg at build time"
        )
    return value


def _arg_declarations(rest: str) -> list[tuple[str, str | None]]:
    """``ARG A=1 B="two words" C`` as ``[(A, "1"), (B, "two words"), (C, None)]``."""
    try:
        words = shlex.split(rest, comments=False, posix=True)
    except ValueError:
        words = rest.split()
    declared: list[tuple[str, str | None]] = []
    for word in words:
        name, equals, default = word.partition("=")
        declared.append((name, default if equals else None))
    return declared


def _flag_words(rest: str) -> tuple[list[str], int]:
    """The leading ``--`` words of an instruction as BuildKit's parser extracts them (a quote,
    single or double, keeps spaces inside a word; quotes are removed) and where the rest starts."""
    words: list[str] = []
    i, n = 0, len(rest)
    while True:
        while i < n and rest[i] in " \t":
            i += 1
        if not rest.startswith("--", i):
            return words, i
        word: list[str] = []
        quote = ""
        while i < n and (quote or rest[i] not in " \t"):
            char = rest[i]
            if quote:
                if char == quote:
                    quote = ""
                else:
                    word.append(char)
            elif char in "\"'":
                quote = char
            else:
                word.append(char)
            i += 1
        words.append("".join(word))


def _flags(rest: str) -> list[tuple[str, str]]:
    """The leading ``--name=value`` flags of an instruction, in order (RUN may --mount twice)."""
    flags: list[tuple[str, str]] = []
    for word in _flag_words(rest)[0]:
        name, _, value = word[2:].partition("=")
        flags.append((name.lower(), value))
    return flags


def _mount_sources(flags: Sequence[tuple[str, str]]) -> list[str]:
    """The ``from=`` of every ``--mount=type=…,from=…``, its fields read as CSV (as BuildKit
    reads them: ``"from=image"`` in quotes is still ``from=``)."""
    sources = []
    for name, mount in flags:
        if name != "mount":
            continue
        try:
            fields = next(csv.reader([mount]), [])
        except csv.Error:
            fields = mount.split(",")
        for key, _, value in (field.partition("=") for field in fields):
            if key.strip().lower() == "from":
                sources.append(value)
    return sources


def _standard_frontend(image: str) -> bool:
    """Docker's own Dockerfile frontend (``docker/dockerfile`` or ``-upstream``, in any spelling
    of Docker Hub, any tag or digest): what nearly every ``# syntax=`` names, not an image of
    the change's to check. Any other frontend is, and so is a name that does not parse."""
    from opk_sign.errors import UsageError
    from opk_sign.oci.reference import Reference, canonical_name

    try:
        name = canonical_name(Reference.parse(image))
    except UsageError:
        return False
    return name in ("docker.io/docker/dockerfile", "docker.io/docker/dockerfile-upstream")


def _shorten(word: str, limit: int = 120) -> str:
    """A Dockerfile's word as a message quotes it: a hostile one can be a megabyte."""
    return word if len(word) <= limit else f"{word[:limit]}… ({len(word)} characters)"


def lines_of(text: str) -> list[str]:
    """Lines as BuildKit's parser reads them: a leading byte-order mark dropped, split at ``\\n``
    only, a trailing ``\\r`` dropped. (``str.splitlines`` also splits at form feeds, vertical
    tabs and Unicode separators, where BuildKit does not: a line break only this check saw could
    hide a ``FROM`` from it.)"""
    lines = [line.removesuffix("\r") for line in text.removeprefix("\ufeff").split("\n")]
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it starts none
    return lines


def scan_dockerfile(text: str, path: str) -> Scan:
    """Every image ``path`` brings in (with its line), and every place the image is unknowable."""
    lines = lines_of(text)
    directives = _directives(lines)
    escape, first = directives.escape, directives.first
    global_args: dict[str, str | None] = {}
    stage_args: dict[str, str | None] = {}
    stages: set[str] = set()
    in_stage = False
    uses: list[ImageUse] = []
    problems: list[Problem] = []

    def bring_in(word: str, line: int, how: str, variables: Mapping[str, str | None]) -> None:
        try:
            image = expand(word, variables, escape)
        except _Unresolvable as err:
            shown = _shorten(word)
            problems.append(Problem(path, line, f"cannot tell which image {shown!r} is: {err}"))
            return
        if not image:
            problems.append(Problem(path, line, f"{how} {_shorten(word)!r} names no image"))
        elif image.lower() == SCRATCH or image.lower() in stages:
            return  # nothing pulled, or an earlier stage
        elif how != "FROM" and image.isdigit():
            return  # --from=0: a stage by its index
        else:
            uses.append(ImageUse(image, path, line, how))

    instructions, broken = _instructions(lines, escape, first)
    problems.extend(Problem(path, line, message) for line, message in broken)
    problems.extend(Problem(path, line, message) for line, message in directives.problems)
    if directives.syntax is not None and not _standard_frontend(directives.syntax[0]):
        # BuildKit pulls this image and runs it as the frontend: it decides what the build does.
        bring_in(directives.syntax[0], directives.syntax[1], "# syntax", {})
    for instruction in instructions:
        line, keyword, rest = instruction.line, instruction.keyword, instruction.rest
        if keyword == "arg":
            scope = stage_args if in_stage else global_args
            for name, default in _arg_declarations(rest):
                if default is None:
                    # Inside a stage, a bare ARG brings in the global one's default.
                    scope[name] = global_args.get(name) if in_stage else None
                    continue
                try:
                    scope[name] = expand(default, {**global_args, **scope}, escape)
                except _Unresolvable:
                    scope[name] = None
        elif keyword == "from":
            in_stage, stage_args = True, {}
            words = rest[_flag_words(rest)[1] :].split()
            if not words:
                problems.append(Problem(path, line, "FROM names no image"))
                continue
            bring_in(words[0], line, "FROM", global_args)
            if len(words) >= 3 and words[1].lower() == "as":
                stages.add(words[2].lower())
        elif keyword in ("copy", "run") and in_stage:
            flags = _flags(rest)
            if keyword == "copy":
                sources = [value for name, value in flags if name == "from"][:1]
            else:
                sources = _mount_sources(flags)
            how = "COPY --from" if keyword == "copy" else "RUN --mount from"
            for source in sources:
                bring_in(source, line, how, {**global_args, **stage_args})
    return Scan(tuple(uses), tuple(problems))


def scan_image_list(text: str, path: str) -> Scan:
    """A list file: one image per line, ``#`` comments, blank lines ignored."""
    uses: list[ImageUse] = []
    problems: list[Problem] = []
    for number, raw in enumerate(lines_of(text), start=1):
        item = raw.split("#", 1)[0].strip()
        if not item:
            continue
        if len(item.split()) > 1:
            problems.append(Problem(path, number, f"one image per line, got {item!r}"))
            continue
        uses.append(ImageUse(item, path, number, "list"))
    return Scan(tuple(uses), tuple(problems))
