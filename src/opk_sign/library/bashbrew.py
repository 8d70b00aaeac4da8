"""Bashbrew library files: what Docker Official Images are, tag by tag (pure logic).

The format is docker-library/official-images' README ("Instruction format", "Multiple
Architectures"): RFC 2822-style stanzas separated by blank lines, ``#`` comment lines, fields
``Name: value`` continued on lines that start with whitespace. The first stanza is the global
entry (``Maintainers`` required, no ``Tags``); its fields are the defaults of every later entry.
An entry has ``Tags`` (and optionally ``SharedTags``), ``Architectures`` (default ``amd64``),
``GitRepo``, ``GitFetch``, ``GitCommit``, ``Directory``, ``File``, ``Builder``, ``Constraints``,
and per-architecture overrides ``<arch>-GitRepo`` / ``-GitFetch`` / ``-GitCommit`` /
``-Directory`` / ``-File``.

Read strictly, because what it says is what ``opk-sign library verify`` requires: an unknown field,
a field twice in a stanza, a malformed value (a commit that is not 40 hex digits, an unknown
architecture, a tag outside the tag grammar, a ``Directory`` leaving the repository), a tag listed
twice, an override for an architecture the entry does not build: each a usage error naming the
line (exit 2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from opk_sign.errors import UsageError

#: Bashbrew architectures and the OCI platform each is in an index.
ARCH_PLATFORMS: Final[Mapping[str, str]] = {
    "amd64": "linux/amd64",
    "arm32v5": "linux/arm/v5",
    "arm32v6": "linux/arm/v6",
    "arm32v7": "linux/arm/v7",
    "arm64v8": "linux/arm64/v8",
    "i386": "linux/386",
    "mips64le": "linux/mips64le",
    "ppc64le": "linux/ppc64le",
    "riscv64": "linux/riscv64",
    "s390x": "linux/s390x",
    "windows-amd64": "windows/amd64",
}
#: Fields that an architecture may override (``amd64-GitCommit``).
ARCH_FIELDS: Final = ("GitRepo", "GitFetch", "GitCommit", "Directory", "File")
ENTRY_FIELDS: Final = (
    "Tags",
    "SharedTags",
    "Architectures",
    "GitRepo",
    "GitFetch",
    "GitCommit",
    "Directory",
    "File",
    "Builder",
    "Constraints",
)
GLOBAL_FIELDS: Final = ("Maintainers", *[f for f in ENTRY_FIELDS if "Tags" not in f])
BUILDERS: Final = ("buildkit", "classic", "oci-import")

MAX_BYTES: Final = 1024 * 1024
MAX_ENTRIES: Final = 4096
MAX_TAGS: Final = 20_000

_FIELD: Final = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*):(.*)")
_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_COMMIT: Final = re.compile(r"[0-9a-f]{40}")
_FETCH: Final = re.compile(r"refs/(?:heads|tags)/[A-Za-z0-9._/-]{1,200}")
_REPO: Final = re.compile(r"(?:https?|git)://[A-Za-z0-9.-]+(?::\d+)?/[A-Za-z0-9._~/-]{1,300}")
_PATH: Final = re.compile(r"[A-Za-z0-9._+@-]+(?:/[A-Za-z0-9._+@-]+)*")
#: A maintainer is 'Name <email> (@github)' or 'Name (@github)', checked by splitting on its
#: delimiters (:func:`_is_maintainer`): no pattern that could backtrack runs on the whole text.
MAX_MAINTAINER_CHARS: Final = 256
_MAINTAINER_NAME: Final = re.compile(r"[^<>(),]+")
_EMAIL_CHARS: Final = re.compile(r"[^<>\s]+")
_GITHUB_HANDLE: Final = re.compile(r"[A-Za-z0-9-]{1,39}")


@dataclass(frozen=True)
class ArchSource:
    """Where one architecture of an entry is built from."""

    repository: str
    commit: str
    fetch: str | None = None
    directory: str = "."
    file: str = "Dockerfile"


@dataclass(frozen=True)
class LibraryEntry:
    """One stanza after the global one: a set of tags built from one place, per architecture."""

    line: int
    tags: tuple[str, ...]
    shared_tags: tuple[str, ...]
    architectures: tuple[str, ...]
    sources: Mapping[str, ArchSource] = field(compare=False)
    builder: str | None = None
    constraints: tuple[str, ...] = ()

    @property
    def all_tags(self) -> tuple[str, ...]:
        return self.tags + self.shared_tags

    def platform(self, arch: str) -> str:
        return ARCH_PLATFORMS[arch]


@dataclass(frozen=True)
class LibraryFile:
    maintainers: tuple[str, ...]
    entries: tuple[LibraryEntry, ...]

    def tags(self) -> list[TagPlan]:
        """Every distinct tag once, in file order, with what each of its platforms must come
        from (a shared tag: the union of the entries sharing it)."""
        plans: dict[str, TagPlan] = {}
        for entry in self.entries:
            for tag in entry.all_tags:
                plan = plans.setdefault(tag, TagPlan(tag))
                plan.entries.append(entry)
                for arch in entry.architectures:
                    plan.platforms.setdefault(entry.platform(arch), []).append(
                        (entry, entry.sources[arch])
                    )
        return list(plans.values())


@dataclass
class TagPlan:
    """One tag to verify or sign: its entries and, per OCI platform, the sources allowed."""

    tag: str
    entries: list[LibraryEntry] = field(default_factory=list)
    platforms: dict[str, list[tuple[LibraryEntry, ArchSource]]] = field(default_factory=dict)

    @property
    def lines(self) -> list[int]:
        return [entry.line for entry in self.entries]


class _Stanza:
    def __init__(self, line: int) -> None:
        self.line = line
        self.fields: dict[str, str] = {}
        self.lines: dict[str, int] = {}
        #: Continuation lines, joined once at the end (repeated += would be quadratic).
        self.more: dict[str, list[str]] = {}

    def finish(self) -> None:
        for name, parts in self.more.items():
            self.fields[name] = " ".join([self.fields[name], *parts])
        self.more.clear()


def _fail(source: str, line: int, message: str, hint: str | None = None) -> UsageError:
    return UsageError(f"{source}, line {line}: {message}", hint=hint)


def _stanzas(text: str, source: str) -> list[_Stanza]:
    stanzas: list[_Stanza] = []
    current: _Stanza | None = None
    last: str | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if "\r" in line:
            raise _fail(source, number, "a carriage return inside a line")
        if line.startswith("#"):
            continue
        if not line.strip():
            current, last = None, None
            continue
        if line[0] in " \t":
            if current is None or last is None:
                raise _fail(source, number, "a continuation line with no field before it")
            current.more.setdefault(last, []).append(line.strip())
            continue
        found = _FIELD.fullmatch(line)
        if found is None:
            raise _fail(
                source,
                number,
                f"expected 'Field: value', got {line[:60]!r}",
                hint="fields are 'Name: value'; entries are separated by blank lines",
            )
        name, value = found.group(1), found.group(2).strip()
        if current is None:
            current = _Stanza(number)
            stanzas.append(current)
            if len(stanzas) > MAX_ENTRIES + 1:
                raise _fail(source, number, f"more than {MAX_ENTRIES} entries")
        if name in current.fields:
            raise _fail(
                source,
                number,
                f"field {name!r} given twice in one entry (first at line {current.lines[name]})",
            )
        current.fields[name] = value
        current.lines[name] = number
        last = name
    for stanza in stanzas:
        stanza.finish()
    return stanzas


def _list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _check_fields(stanza: _Stanza, allowed: Sequence[str], source: str, where: str) -> None:
    for name, number in stanza.lines.items():
        if name in allowed:
            continue
        arch, _, base = name.rpartition("-")
        if arch in ARCH_PLATFORMS and base in ARCH_FIELDS:
            continue
        if name in ("Tags", "SharedTags") and where == "the global entry":
            raise _fail(source, number, f"{name!r} is not allowed in the global entry")
        if name == "Maintainers":
            raise _fail(source, number, "'Maintainers' belongs in the global entry only")
        raise _fail(
            source,
            number,
            f"unknown field {name!r} in {where}",
            hint=f"known fields: {', '.join(ENTRY_FIELDS)} and <arch>-{'/'.join(ARCH_FIELDS)}",
        )


def parse_library(data: bytes | str, source: str = "library file") -> LibraryFile:
    """A library file read strictly (module docstring); errors name ``source`` and the line."""
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            raise UsageError(f"{source} is larger than {MAX_BYTES} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data[: err.start].count(b"\n") + 1
            raise _fail(source, line, "not UTF-8") from None
    else:
        if len(data) > MAX_BYTES:  # characters: each is at least a byte
            raise UsageError(f"{source} is larger than {MAX_BYTES} bytes")
        text = data
    stanzas = _stanzas(text, source)
    if not stanzas:
        raise UsageError(f"{source}: empty; expected a global entry with Maintainers")
    head, *rest = stanzas
    _check_fields(head, GLOBAL_FIELDS, source, "the global entry")
    if "Maintainers" not in head.fields:
        raise _fail(source, head.line, "the global entry (the first) needs 'Maintainers'")
    maintainers = _list(head.fields["Maintainers"])
    for maintainer in maintainers:
        if not _is_maintainer(maintainer):
            raise _fail(
                source,
                head.lines["Maintainers"],
                f"maintainer {_clip(maintainer)!r} is not 'Name <email> (@github)' or "
                f"'Name (@github)' (at most {MAX_MAINTAINER_CHARS} characters)",
            )
    if not maintainers:
        raise _fail(source, head.lines["Maintainers"], "'Maintainers' is empty")
    if not rest:
        raise UsageError(f"{source}: no entries after the global entry")
    entries = [_entry(stanza, head, source) for stanza in rest]
    _check_tags(entries, source)
    return LibraryFile(tuple(maintainers), tuple(entries))


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _is_maintainer(text: str) -> bool:
    """'Name <email> (@github)' or 'Name (@github)': the name without ``<>(),``, the email
    ``local@domain`` without ``<>`` or spaces. Linear in the text, and the text is short."""
    if len(text) > MAX_MAINTAINER_CHARS:
        return False
    head, sep, handle = text.rpartition(" (@")
    if not sep or not handle.endswith(")") or not _GITHUB_HANDLE.fullmatch(handle[:-1]):
        return False
    if head.endswith(">"):
        head, sep, email = head[:-1].rpartition(" <")
        if not sep or not _EMAIL_CHARS.fullmatch(email) or "@" not in email[1:-1]:
            return False
    return _MAINTAINER_NAME.fullmatch(head) is not None


def _value(stanza: _Stanza, head: _Stanza, name: str) -> tuple[str | None, int]:
    if name in stanza.fields:
        return stanza.fields[name], stanza.lines[name]
    if name in head.fields:
        return head.fields[name], head.lines[name]
    return None, stanza.line


def _entry(stanza: _Stanza, head: _Stanza, source: str) -> LibraryEntry:
    _check_fields(stanza, ENTRY_FIELDS, source, f"the entry at line {stanza.line}")
    if "Tags" not in stanza.fields:
        raise _fail(source, stanza.line, "an entry needs 'Tags'")
    tags = _tags(stanza.fields["Tags"], stanza.lines["Tags"], source, "Tags")
    if not tags:
        raise _fail(source, stanza.lines["Tags"], "'Tags' is empty")
    shared = (
        _tags(stanza.fields["SharedTags"], stanza.lines["SharedTags"], source, "SharedTags")
        if "SharedTags" in stanza.fields
        else []
    )
    arch_text, arch_line = _value(stanza, head, "Architectures")
    architectures = _list(arch_text) if arch_text is not None else ["amd64"]
    for arch in architectures:
        if arch not in ARCH_PLATFORMS:
            raise _fail(
                source,
                arch_line,
                f"unknown architecture {arch!r}",
                hint="known: " + ", ".join(ARCH_PLATFORMS),
            )
    if len(set(architectures)) != len(architectures) or not architectures:
        raise _fail(source, arch_line, "'Architectures' is empty or lists one twice")
    for name, number in stanza.lines.items():
        arch, _, base = name.rpartition("-")
        if base in ARCH_FIELDS and arch in ARCH_PLATFORMS and arch not in architectures:
            raise _fail(
                source, number, f"{name!r} for {arch}, which the entry's Architectures omit"
            )
    sources = {arch: _source(stanza, head, arch, source) for arch in architectures}
    builder, builder_line = _value(stanza, head, "Builder")
    if builder is not None and builder not in BUILDERS:
        raise _fail(source, builder_line, f"unknown Builder {builder!r} ({', '.join(BUILDERS)})")
    constraints, _ = _value(stanza, head, "Constraints")
    return LibraryEntry(
        stanza.line,
        tuple(tags),
        tuple(shared),
        tuple(architectures),
        sources,
        builder,
        tuple(_list(constraints or "")),
    )


def _source(stanza: _Stanza, head: _Stanza, arch: str, source: str) -> ArchSource:
    def pick(name: str) -> tuple[str | None, int]:
        specific = f"{arch}-{name}"
        if specific in stanza.fields:
            return stanza.fields[specific], stanza.lines[specific]
        if specific in head.fields:
            return head.fields[specific], head.lines[specific]
        return _value(stanza, head, name)

    repository, repo_line = pick("GitRepo")
    commit, commit_line = pick("GitCommit")
    fetch, fetch_line = pick("GitFetch")
    directory, dir_line = pick("Directory")
    file, file_line = pick("File")
    if repository is None:
        raise _fail(source, stanza.line, f"no GitRepo for {arch} (in the entry or the global one)")
    if not _REPO.fullmatch(repository):
        raise _fail(source, repo_line, f"GitRepo {repository!r} is not an http(s) or git URL")
    if commit is None:
        raise _fail(source, stanza.line, f"no GitCommit for {arch}")
    if not _COMMIT.fullmatch(commit):
        raise _fail(
            source, commit_line, f"GitCommit {commit!r} is not a full commit (40 lowercase hex)"
        )
    if fetch is not None and not _FETCH.fullmatch(fetch):
        raise _fail(source, fetch_line, f"GitFetch {fetch!r} is not refs/heads/… or refs/tags/…")
    for name, value, number in (("Directory", directory, dir_line), ("File", file, file_line)):
        if value is not None and (
            not _PATH.fullmatch(value) or ".." in value.split("/") or len(value) > 256
        ):
            raise _fail(source, number, f"{name} {value!r} is not a relative path in the repo")
    return ArchSource(repository, commit, fetch, directory or ".", file or "Dockerfile")


def _tags(value: str, line: int, source: str, name: str) -> list[str]:
    tags = _list(value)
    for tag in tags:
        if not _TAG.fullmatch(tag):
            raise _fail(source, line, f"{name}: {tag!r} is not a valid tag")
    if len(set(tags)) != len(tags):
        raise _fail(source, line, f"{name} lists a tag twice")
    return tags


def _check_tags(entries: list[LibraryEntry], source: str) -> None:
    owner: dict[str, int] = {}
    shared: dict[str, int] = {}
    for entry in entries:
        for tag in entry.tags:
            if tag in owner or tag in shared:
                first = owner.get(tag, shared.get(tag))
                raise _fail(
                    source, entry.line, f"tag {tag!r} is already given by the entry at line {first}"
                )
            owner[tag] = entry.line
        for tag in entry.shared_tags:
            if tag in owner:
                raise _fail(
                    source,
                    entry.line,
                    f"shared tag {tag!r} is a plain tag of the entry at line {owner[tag]}",
                )
            shared.setdefault(tag, entry.line)
    if len(owner) + len(shared) > MAX_TAGS:
        raise UsageError(f"{source}: more than {MAX_TAGS} tags")
