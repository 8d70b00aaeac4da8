"""``mapping.json``: which image names must be signed, and by whom (which policy document).

A registry operator publishes the mapping through TUF. Each rule maps an image-name pattern to a
policy target; the **most specific** matching rule wins (:func:`specificity`), whatever the order
of the rules, so reordering a file cannot change what it means. Mirror rewrites turn a mirror's
name into the canonical one *before* matching (the most specific matching source, likewise), so
pulling ``mirror.gcr.io/library/alpine`` instead of ``docker.io/library/alpine`` cannot escape
the rule for official images. :meth:`Mapping.overlaps` finds entries that some name matches both
(``trust repo map`` refuses to add them without ``--force``). Format::

    {"version": 1,
     "minVerifierVersion": "0.2.0",
     "rewrites": [{"from": "mirror.gcr.io/library/*", "to": "docker.io/library/*"}],
     "rules": [{"pattern": "docker.io/library/*", "policy": "policies/official-images.json"},
               {"pattern": "registry.example/mirror/app", "policy": "policies/app.json",
                "signedRepositories": ["ghcr.io/octo-org/app"]}]}

Patterns are globs on the normalised, lowercase ``registry/repository`` name
(``docker.io/library/alpine``, never ``alpine``): ``*`` matches within one path component, ``**``
across components. Unknown
members are kept. Pure logic: no I/O.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections import deque
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from opk_sign._version import __version__
from opk_sign.errors import FormatError, TrustError, UsageError
from opk_sign.jose import JSONObject, parse_json_object
from opk_sign.oci.reference import Reference, canonical_name
from opk_sign.policy import signed_repositories

MAPPING_VERSION: Final = 1
#: The target path of the mapping in the TUF repository.
MAPPING_TARGET: Final = "mapping.json"

_WILDCARD: Final = re.compile(r"\*\*|\*")
_TARGET_PATH: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*(?:/[A-Za-z0-9_][A-Za-z0-9._-]*)*$")
_VERSION: Final = re.compile(r"^\d+(?:\.\d+){0,3}$")


@functools.cache
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` is one or more characters of one path component, ``**`` one or more of any."""
    parts: list[str] = []
    last = 0
    for wildcard in _WILDCARD.finditer(pattern):
        parts.append(re.escape(pattern[last : wildcard.start()]))
        parts.append("(.+)" if wildcard.group() == "**" else "([^/]+)")
        last = wildcard.end()
    parts.append(re.escape(pattern[last:]))
    return re.compile("".join(parts))


def specificity(pattern: str) -> tuple[int, int, int, int, str]:
    """The sort key of the precedence: the smallest key among the matching entries wins.

    1. an exact name (no wildcard) beats any pattern;
    2. then the longer literal prefix (the text before the first wildcard);
    3. then more literal characters in all;
    4. then fewer ``**`` (``*`` stays within one path component);
    5. then the pattern that sorts first by code point (patterns are unique in a mapping).
    """
    first = _WILDCARD.search(pattern)
    prefix = len(pattern) if first is None else first.start()
    literal = len(_WILDCARD.sub("", pattern))
    return (0 if first is None else 1, -prefix, -literal, pattern.count("**"), pattern)


# Wildcards as NFA steps: "*" is one non-slash character then any number more; "**" likewise
# with any character. A literal is itself.
_ONE, _MORE, _ONE_ANY, _MORE_ANY = "\x00one", "\x00more", "\x00one-any", "\x00more-any"
# Characters standing for "any character no pattern names" in an example name.
_FILLERS: Final = "xyzabcdefghijklmnopqrstuvw0123456789_.-"


def _tokens(pattern: str) -> tuple[str, ...]:
    tokens: list[str] = []
    last = 0
    for wildcard in _WILDCARD.finditer(pattern):
        tokens.extend(pattern[last : wildcard.start()])
        tokens.extend((_ONE, _MORE) if wildcard.group() == "*" else (_ONE_ANY, _MORE_ANY))
        last = wildcard.end()
    tokens.extend(pattern[last:])
    return tuple(tokens)


def _step(tokens: tuple[str, ...], state: int, char: str) -> int | None:
    """The state after ``char`` (None: no match); loops stay where they are."""
    if state == len(tokens):
        return None
    token = tokens[state]
    if token in (_ONE, _ONE_ANY):
        return state + 1 if token == _ONE_ANY or char != "/" else None
    if token in (_MORE, _MORE_ANY):
        return state if token == _MORE_ANY or char != "/" else None
    return state + 1 if token == char else None


@functools.lru_cache(maxsize=4096)
def overlap(first: str, second: str) -> str | None:
    """A shortest name both glob patterns match, or None if no name matches both.

    Exact, not a heuristic: a 0-1 breadth-first search of the product of the two patterns'
    automata. Characters neither pattern names all behave alike, so one stands for them all.
    """
    a, b = _tokens(first), _tokens(second)
    named = {t for t in (*a, *b) if len(t) == 1}
    filler = next(
        c for c in itertools.chain(_FILLERS, map(chr, itertools.count(256))) if c not in named
    )
    alphabet = [filler, *sorted(named | {"/"})]  # the filler first: readable examples
    start = (0, 0)
    length = {start: 0}
    came_from: dict[tuple[int, int], tuple[tuple[int, int], str]] = {}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        i, j = state
        if state == (len(a), len(b)):
            chars: list[str] = []
            while state in came_from:
                state, char = came_from[state]
                chars.append(char)
            return "".join(reversed(chars))
        moves: list[tuple[tuple[int, int], str]] = []
        # A loop may be left without consuming a character (an epsilon move).
        if i < len(a) and a[i] in (_MORE, _MORE_ANY):
            moves.append(((i + 1, j), ""))
        if j < len(b) and b[j] in (_MORE, _MORE_ANY):
            moves.append(((i, j + 1), ""))
        for char in alphabet:
            next_i, next_j = _step(a, i, char), _step(b, j, char)
            if next_i is not None and next_j is not None:
                moves.append(((next_i, next_j), char))
        for target, char in moves:
            distance = length[state] + len(char)
            if distance < length.get(target, distance + 1):
                length[target] = distance
                came_from[target] = (state, char)
                if char:
                    queue.append(target)
                else:
                    queue.appendleft(target)
    return None


def check_pattern(pattern: Any, what: str = "pattern") -> str:
    """``pattern`` if it is a glob over normalised names; UsageError saying why not otherwise."""
    if not isinstance(pattern, str) or not pattern:
        raise UsageError(f"{what} must be a non-empty string")
    if "***" in pattern:
        raise UsageError(f"{what} {pattern!r}: use * (one path component) or ** (any)")
    # What a name the pattern matches looks like (** spans components): it must be normalised.
    sample = _WILDCARD.sub(lambda m: "x/x" if m.group() == "**" else "x", pattern)
    try:
        normalised = Reference.parse(sample, default_tag=None)
    except UsageError as err:
        raise UsageError(f"{what} {pattern!r} is not an image name pattern: {err}") from None
    if normalised.tag or normalised.digest or normalised.name != sample or sample != sample.lower():
        raise UsageError(
            f"{what} {pattern!r} is not a normalised registry/repository name",
            hint="patterns name the registry and the full path, without tag or digest, e.g."
            " docker.io/library/* or ghcr.io/octo-org/**",
        )
    canonical = canonical_name(normalised)
    if canonical != sample:
        # Names are looked up in their canonical spelling (lookup): another would never match.
        raise UsageError(
            f"{what} {pattern!r} names a registry by another spelling than its canonical one "
            f"({canonical.split('/', 1)[0]})",
            hint="write the registry without its default port, and docker.io for Docker Hub",
        )
    return pattern


def check_target_path(path: Any, what: str = "policy") -> str:
    """A relative target path without ``..``, as TUF target names are."""
    if not isinstance(path, str) or not _TARGET_PATH.match(path) or ".." in path.split("/"):
        raise UsageError(
            f"{what} {path!r} is not a target path",
            hint="a relative path of letters, digits, '.', '_' and '-', e.g."
            " policies/official-images.json",
        )
    return path


def parse_version(text: Any, what: str = "version") -> tuple[int, ...]:
    if not isinstance(text, str) or not _VERSION.match(text):
        raise UsageError(f"{what} {text!r} must be a release version such as 1.2.0")
    return tuple(int(part) for part in text.split("."))


def _release(version: str) -> tuple[int, ...]:
    """The numeric release of our own version (``0.2.0.dev1`` is ``(0, 2, 0)``)."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(p) for p in match.group().split(".")) if match else (0,)


def _pad(version: tuple[int, ...]) -> tuple[int, ...]:
    return version + (0,) * (4 - len(version))


@dataclass(frozen=True)
class Rewrite:
    """A mirror's names (``source``) and the canonical names they stand for (``target``)."""

    source: str
    target: str
    extra: JSONObject = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        check_pattern(self.source, "rewrite source")
        check_pattern(self.target, "rewrite target")
        if _WILDCARD.findall(self.source) != _WILDCARD.findall(self.target):
            raise UsageError(
                f"rewrite {self.source!r} -> {self.target!r}: both sides need the same"
                " wildcards in the same order",
                hint="e.g. mirror.gcr.io/library/* -> docker.io/library/*",
            )

    def apply(self, name: str) -> str | None:
        """The canonical name for ``name``, or None if this rewrite does not apply."""
        match = _glob_regex(self.source).fullmatch(name)
        if match is None:
            return None
        captured = iter(match.groups())
        canonical = _WILDCARD.sub(lambda _: next(captured), self.target)
        # Normalise again: mirror.gcr.io/** -> docker.io/** maps .../alpine to .../library/alpine.
        return _normalised_name(canonical)

    def to_dict(self) -> JSONObject:
        return {"from": self.source, "to": self.target, **self.extra}


@dataclass(frozen=True)
class Rule:
    """Image names matching ``pattern`` must satisfy the policy document at target ``policy``;
    their signatures may also name one of ``signed_repositories`` (``signedRepositories``: where
    the images were signed before being copied here), besides the canonical name."""

    pattern: str
    policy: str
    extra: JSONObject = field(default_factory=dict, compare=False)
    signed_repositories: tuple[str, ...] = ()
    #: ``transparency: required``: every bundle must carry a verified transparency log entry
    #: (docs/transparency.md), whatever the policy says.
    transparency: str | None = None

    def __post_init__(self) -> None:
        check_pattern(self.pattern)
        check_target_path(self.policy)
        if self.transparency not in (None, "required", "optional"):
            raise UsageError(
                f"rule {self.pattern!r}: {TRANSPARENCY} must be 'required' or 'optional', "
                f"not {self.transparency!r}"
            )
        normalised = signed_repositories(self.signed_repositories, SIGNED_REPOSITORIES)
        if normalised != self.signed_repositories:
            raise UsageError(
                f"rule {self.pattern!r}: {SIGNED_REPOSITORIES} must be normalised names, once each",
                hint=f"e.g. {', '.join(normalised)}",
            )

    def matches(self, name: str) -> bool:
        return _glob_regex(self.pattern).fullmatch(name) is not None

    def to_dict(self) -> JSONObject:
        doc: JSONObject = {"pattern": self.pattern, "policy": self.policy}
        if self.signed_repositories:
            doc[SIGNED_REPOSITORIES] = list(self.signed_repositories)
        if self.transparency is not None:
            doc[TRANSPARENCY] = self.transparency
        return {**doc, **self.extra}


#: The rule member naming where images were signed before being copied (a list of names).
SIGNED_REPOSITORIES: Final = "signedRepositories"
#: The rule member requiring transparency log entries ("required" or "optional").
TRANSPARENCY: Final = "transparency"


@dataclass(frozen=True)
class MatchedRule:
    """The rule that applies to an image: its policy target and the canonical name to verify."""

    pattern: str
    #: Target path of the policy document (see :func:`opk_sign.policy.policy_from_document`).
    policy: str
    #: The canonical ``registry/repository`` (after mirror rewrites): signatures must name it.
    name: str
    #: The normalised name that was asked about (a mirror's name, when rewritten).
    requested: str
    #: Position of the rule in the mapping (0-based).
    index: int
    #: Repositories a signature may name besides ``name`` (the rule's ``signedRepositories``).
    signed_repositories: tuple[str, ...] = ()
    #: The rule's ``transparency`` ("required": every bundle needs a verified log entry).
    transparency: str | None = None

    @property
    def rewritten(self) -> bool:
        return self.name != self.requested


@dataclass(frozen=True)
class Overlap:
    """Two entries of a mapping that one name (``example``) matches both, with different effects.

    ``first`` is the one that applies to such names: the more specific of two rules or of two
    rewrites, or the rewrite when a rewrite's source overlaps a rule (rewrites apply first, so
    the rule never decides for those names).
    """

    first: Rule | Rewrite
    second: Rule | Rewrite
    example: str

    def describe(self) -> str:
        first, second = _entry(self.first), _entry(self.second)
        if isinstance(self.first, Rewrite) and isinstance(self.second, Rule):
            return (
                f"{first} and {second} both match {self.example}: the rewrite applies first, so"
                " the rule never decides for those names"
            )
        return f"{first} and {second} both match {self.example}: the more specific, {first}, wins"

    def to_dict(self) -> JSONObject:
        return {
            "applies": self.first.to_dict(),
            "overridden": self.second.to_dict(),
            "example": self.example,
        }


def _entry(entry: Rule | Rewrite) -> str:
    if isinstance(entry, Rule):
        return f"rule {entry.pattern} -> {entry.policy}"
    return f"rewrite {entry.source} => {entry.target}"


@dataclass(frozen=True)
class Mapping:
    """The rules and mirror rewrites of ``mapping.json`` (their order in the file is kept but
    means nothing: the most specific entry applies)."""

    rules: tuple[Rule, ...] = ()
    rewrites: tuple[Rewrite, ...] = ()
    min_verifier_version: str | None = None
    extra: JSONObject = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.min_verifier_version is not None:
            parse_version(self.min_verifier_version, "minVerifierVersion")
        # Precedence orders by pattern: the same pattern twice would leave it to file order.
        for what, keys in (
            ("rule pattern", [r.pattern for r in self.rules]),
            ("rewrite source", [r.source for r in self.rewrites]),
        ):
            repeated = sorted({key for key in keys if keys.count(key) > 1})
            if repeated:
                raise UsageError(f"{what} {repeated[0]!r} appears more than once")

    # --- the format

    @classmethod
    def from_json(cls, data: bytes | str) -> Mapping:
        """Parse ``mapping.json`` strictly; every problem is a :class:`TrustError`."""
        try:
            doc = parse_json_object(data, MAPPING_TARGET)
        except FormatError as err:
            raise TrustError(err.message) from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: AbcMapping[str, Any]) -> Mapping:
        version = doc.get("version")
        if version != MAPPING_VERSION:
            raise TrustError(
                f"{MAPPING_TARGET}: version {version!r} is not {MAPPING_VERSION}",
                hint="a newer mapping format needs a newer opk-sign: upgrade it",
            )
        try:
            rules = tuple(
                Rule(
                    item["pattern"],
                    item["policy"],
                    _extra(item, "pattern", "policy", SIGNED_REPOSITORIES, TRANSPARENCY),
                    _names(item, f"rule {item['pattern']!r}"),
                    _transparency(item),
                )
                for item in _objects(doc, "rules", ("pattern", "policy"))
            )
            rewrites = tuple(
                Rewrite(item["from"], item["to"], _extra(item, "from", "to"))
                for item in _objects(doc, "rewrites", ("from", "to"), optional=True)
            )
            minimum = doc.get("minVerifierVersion")
            extra = _extra(doc, "version", "rules", "rewrites", "minVerifierVersion")
            return cls(rules, rewrites, minimum, extra)
        except UsageError as err:
            raise TrustError(f"{MAPPING_TARGET}: {err.message}", hint=err.hint) from None

    def to_dict(self) -> JSONObject:
        doc: JSONObject = {"version": MAPPING_VERSION}
        if self.min_verifier_version is not None:
            doc["minVerifierVersion"] = self.min_verifier_version
        if self.rewrites:
            doc["rewrites"] = [r.to_dict() for r in self.rewrites]
        doc["rules"] = [r.to_dict() for r in self.rules]
        doc.update(self.extra)
        return doc

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False).encode() + b"\n"

    # --- lookup

    def rules_in_precedence(self) -> tuple[Rule, ...]:
        """The rules in the order they are tried: most specific first (:func:`specificity`)."""
        return tuple(sorted(self.rules, key=lambda rule: specificity(rule.pattern)))

    def rewrites_in_precedence(self) -> tuple[Rewrite, ...]:
        """The rewrites in the order they are tried: most specific source first."""
        return tuple(sorted(self.rewrites, key=lambda rewrite: specificity(rewrite.source)))

    def canonical_name(self, name: str) -> str:
        """``name`` after the most specific mirror rewrite that applies (itself if none does)."""
        for rewrite in self.rewrites_in_precedence():
            canonical = rewrite.apply(name)
            if canonical is not None:
                return canonical
        return name

    def lookup(self, image: str | Reference) -> MatchedRule | None:
        """The most specific rule matching the image's canonical name, or None if none does.

        ``image`` is any reference (``alpine``, ``ghcr.io/o/app:v1``, ``name@sha256:…``); only
        its normalised ``registry/repository`` counts. The order of the rules in the file does
        not matter: a mapping whose rules overlap still means one thing.
        """
        reference = image if isinstance(image, Reference) else Reference.parse(image)
        # Every spelling of the repository is one name (canonical_name): Docker.IO/library/x,
        # ghcr.io:443/o/x or registry-1.docker.io/x must not escape the rule for their name.
        requested = canonical_name(reference)
        name = self.canonical_name(requested)
        for rule in self.rules_in_precedence():
            if rule.matches(name):
                index = self.rules.index(rule)
                return MatchedRule(
                    rule.pattern,
                    rule.policy,
                    name,
                    requested,
                    index,
                    rule.signed_repositories,
                    rule.transparency,
                )
        return None

    def overlaps(self) -> list[Overlap]:
        """Entries that a name matches both, with different effects: rules with different
        policies, rewrites with different targets, and a rewrite source with any rule."""
        found: list[Overlap] = []
        rules, rewrites = self.rules_in_precedence(), self.rewrites_in_precedence()
        for position, rule in enumerate(rules):
            for other in rules[position + 1 :]:
                example = overlap(rule.pattern, other.pattern)
                same = (other.policy, other.signed_repositories) == (
                    rule.policy,
                    rule.signed_repositories,
                )
                if not same and example is not None:
                    found.append(Overlap(rule, other, example))
        for position, rewrite in enumerate(rewrites):
            for later in rewrites[position + 1 :]:
                example = overlap(rewrite.source, later.source)
                if later.target != rewrite.target and example is not None:
                    found.append(Overlap(rewrite, later, example))
        for rewrite in rewrites:
            for rule in rules:
                example = overlap(rewrite.source, rule.pattern)
                if example is not None:
                    found.append(Overlap(rewrite, rule, example))
        return found

    def overlaps_added_since(self, before: Mapping) -> list[Overlap]:
        """The overlaps of this mapping that ``before`` did not have (an edit's new ones)."""
        known = set(before.overlaps())
        return [found for found in self.overlaps() if found not in known]

    def policies(self) -> list[str]:
        """Every policy target the rules name, in rule order, without repeats."""
        return list(dict.fromkeys(rule.policy for rule in self.rules))

    def check_verifier_version(self, version: str = __version__) -> None:
        """Refuse (TrustError) to verify with an opk-sign older than the mapping requires."""
        if self.min_verifier_version is None:
            return
        required = parse_version(self.min_verifier_version)
        if _pad(_release(version)) < _pad(required):
            raise TrustError(
                f"the trust repository requires opk-sign {self.min_verifier_version} or newer;"
                f" this is {version}",
                hint="upgrade opk-sign: older verifiers may lack checks the policies rely on",
            )

    # --- editing (maintainer commands)

    def with_rule(
        self, pattern: str, policy: str, signed_in: tuple[str, ...] | None = None
    ) -> Mapping:
        """The rule for ``pattern`` set to ``policy`` (and, when given, its signed
        repositories): replaced in place, or appended last (the position does not change what
        the mapping means)."""
        if all(rule.pattern != pattern for rule in self.rules):
            return replace(self, rules=(*self.rules, Rule(pattern, policy, {}, signed_in or ())))
        rules = tuple(
            replace(
                r,
                policy=policy,
                signed_repositories=r.signed_repositories if signed_in is None else signed_in,
            )
            if r.pattern == pattern
            else r
            for r in self.rules
        )
        return replace(self, rules=rules)

    def with_rewrite(self, source: str, target: str) -> Mapping:
        """The rewrite of ``source`` set to ``target``: replaced in place, or appended last."""
        new = Rewrite(source, target)
        kept = [r if r.source != source else replace(r, target=target) for r in self.rewrites]
        if all(r.source != source for r in self.rewrites):
            kept.append(new)
        return replace(self, rewrites=tuple(kept))

    def with_min_verifier_version(self, version: str | None) -> Mapping:
        if version is not None:
            parse_version(version, "minimum verifier version")
        return replace(self, min_verifier_version=version)


def _normalised_name(name: str) -> str:
    return Reference.parse(name, default_tag=None).name


def _objects(
    doc: AbcMapping[str, Any], member: str, strings: tuple[str, ...], *, optional: bool = False
) -> list[JSONObject]:
    """``doc[member]``: a list of objects, each with the string members ``strings``."""
    items = doc.get(member)
    if items is None and optional:
        return []
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise UsageError(f"member {member!r} must be a list of JSON objects")
    for index, item in enumerate(items):
        for name in strings:
            if not isinstance(item.get(name), str):
                raise UsageError(f"{member}[{index}]: member {name!r} must be a string")
    return items


def _names(item: AbcMapping[str, Any], where: str) -> tuple[str, ...]:
    """A rule's ``signedRepositories``: a list of normalised repository names, or absent."""
    names = item.get(SIGNED_REPOSITORIES, [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UsageError(f"{where}: {SIGNED_REPOSITORIES} must be a list of repository names")
    return tuple(names)


def _transparency(item: AbcMapping[str, Any]) -> str | None:
    value = item.get(TRANSPARENCY)
    if value is not None and not isinstance(value, str):
        raise UsageError(f"rule {item['pattern']!r}: {TRANSPARENCY} must be a string")
    return value


def _extra(doc: AbcMapping[str, Any], *known: str) -> JSONObject:
    return {k: v for k, v in doc.items() if k not in known}


__all__ = [
    "MAPPING_TARGET",
    "MAPPING_VERSION",
    "Mapping",
    "MatchedRule",
    "Overlap",
    "Rewrite",
    "Rule",
    "check_pattern",
    "check_target_path",
    "overlap",
    "specificity",
]
