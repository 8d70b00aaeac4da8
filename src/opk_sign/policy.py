"""Identity policies: which signer an image must come from, as small objects over PK token claims.

One class per claim, each with one ``verify(claims)`` that raises :class:`PolicyError` naming the
claim, the expectation and the value seen. ``AllOf`` refuses to be empty (an empty policy would
pass every signer); ``AnyOf`` reports how many alternatives failed and why.

Pure logic: no I/O. :func:`policy_from_document` builds a policy from a parsed YAML/JSON document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from opk_sign.claims import NO_REGEX, POLICY_FIELDS
from opk_sign.errors import PolicyError, UsageError
from opk_sign.identity import PINNING_CLAIMS
from opk_sign.issuer import GITHUB_ISSUER
from opk_sign.oci.reference import Reference

Claims = Mapping[str, Any]


class IdentityPolicy(Protocol):
    def verify(self, claims: Claims) -> None:
        """Return if the claims satisfy the policy; raise :class:`PolicyError` otherwise."""
        ...

    def describe(self) -> str:
        """A one-line human description, e.g. ``repository == "octo-org/app"``."""
        ...


@dataclass(frozen=True)
class ClaimPolicy:
    """A claim equal to a value, or fully matching an anchored regular expression."""

    claim: str
    expected: str
    regex: bool = False

    def __post_init__(self) -> None:
        if not self.expected:
            raise UsageError(f"the policy for {self.claim!r} is empty; give a value")
        if self.regex:
            if len(self.expected) > MAX_PATTERN_CHARS:
                raise UsageError(
                    f"the regular expression for {self.claim!r} is longer than "
                    f"{MAX_PATTERN_CHARS} characters"
                )
            try:
                re.compile(self.expected)
            except (re.error, RecursionError, OverflowError) as err:
                raise UsageError(
                    f"invalid regular expression for {self.claim!r}: "
                    f"{err if isinstance(err, re.error) else 'nested too deeply'}",
                    hint="the pattern is matched against the whole claim value (anchored)",
                ) from None

    def verify(self, claims: Claims) -> None:
        value = claims.get(self.claim)
        if not isinstance(value, str):
            raise PolicyError(
                f"claim {self.claim!r} is {'missing' if value is None else repr(value)};"
                f" the policy requires {self._requirement()}"
            )
        ok = (
            re.fullmatch(self.expected, value) is not None if self.regex else value == self.expected
        )
        if not ok:
            raise PolicyError(
                f"claim {self.claim!r} is {value!r}; the policy requires {self._requirement()}"
            )

    def _requirement(self) -> str:
        return f"a match of /{self.expected}/" if self.regex else repr(self.expected)

    def describe(self) -> str:
        return f"{self.claim} {'=~' if self.regex else '=='} {self.expected!r}"


@dataclass(frozen=True)
class AllOf:
    policies: Sequence[IdentityPolicy]
    #: A policy document's ``signed-repository``: repositories a signature may name besides the
    #: image's own (a copy's or mirror's origin). Not a claim: the verifier checks it against the
    #: signed payload, and the claims must satisfy ``policies`` all the same.
    signed_repositories: tuple[str, ...] = ()
    #: A policy document's ``source-repository`` / ``source-commit``: not claims either, but what
    #: each platform's BuildKit provenance must name (verify.attestations.check_source).
    source: Mapping[str, str] | None = None
    #: A policy document's ``transparency: required``: every bundle must carry a verified
    #: transparency log entry (docs/transparency.md). None: entries are checked when present.
    transparency: str | None = None

    def __post_init__(self) -> None:
        if not self.policies:
            raise UsageError(
                "an empty identity policy would accept any signer",
                hint="require at least --repository (or --owner, --signer-workflow ...)",
            )

    def verify(self, claims: Claims) -> None:
        for policy in self.policies:
            policy.verify(claims)

    def describe(self) -> str:
        text = " and ".join(_group(p) for p in self.policies)
        if self.signed_repositories:
            text += (
                " (signed in the image's repository or "
                + " or ".join(self.signed_repositories)
                + ")"
            )
        return text


def signed_repository(name: Any, what: str = "--signed-repository") -> str:
    """A repository a signature may have been made for, normalised as signing wrote it
    (``registry/repository``: ``alpine`` is ``docker.io/library/alpine``); no tag or digest."""
    if not isinstance(name, str) or not name:
        raise UsageError(f"{what} must be a repository name such as ghcr.io/octo-org/app")
    reference = Reference.parse(name, default_tag=None)
    if reference.tag is not None or reference.digest is not None:
        raise UsageError(
            f"{what} {name!r} names a tag or digest; give the repository only",
            hint=f"e.g. {reference.name}",
        )
    return reference.name


def signed_repositories(names: Sequence[Any], what: str = "--signed-repository") -> tuple[str, ...]:
    """Each name normalised (:func:`signed_repository`), once, in the order given."""
    return tuple(dict.fromkeys(signed_repository(name, what) for name in names))


@dataclass(frozen=True)
class AnyOf:
    policies: Sequence[IdentityPolicy]

    def __post_init__(self) -> None:
        if not self.policies:
            raise UsageError("an empty any-of policy can never be satisfied")

    def verify(self, claims: Claims) -> None:
        failures = []
        for policy in self.policies:
            try:
                policy.verify(claims)
            except PolicyError as err:
                failures.append(err.message)
            else:
                return
        raise PolicyError(
            f"0 of {len(self.policies)} alternative policies matched: " + "; ".join(failures)
        )

    def describe(self) -> str:
        return " or ".join(_group(p) for p in self.policies)


def _group(policy: IdentityPolicy) -> str:
    text = policy.describe()
    return f"({text})" if isinstance(policy, AllOf | AnyOf) and len(policy.policies) > 1 else text


#: Policy fields, as flags and policy-file keys, and the PK token claim each one checks.
FIELDS: Final = POLICY_FIELDS


def claim_policy(field: str, value: str, *, regex: bool = False) -> ClaimPolicy:
    """The check of one policy field. ``signer-workflow`` without ``@ref`` names the workflow
    file at any ref, as ``gh attestation verify --signer-workflow`` does: the owner, repository
    and path stay exact, only the ref is free."""
    if field == "signer-workflow" and not regex and "@" not in value:
        return ClaimPolicy(FIELDS[field], re.escape(value) + "@.+", regex=True)
    return ClaimPolicy(FIELDS[field], value, regex)


def policy_field_names() -> list[str]:
    """Every policy field as a flag or action input name: ``repository``, ``repository-regex``..."""
    names: list[str] = []
    for name in FIELDS:
        names.append(name)
        if name not in NO_REGEX:
            names.append(f"{name}-regex")
    return names


def policy_from_fields(
    fields: Mapping[str, str],
    *,
    default_issuer: str | None = GITHUB_ISSUER,
    require_signer: bool = True,
) -> AllOf:
    """A policy from ``{field: value}`` and ``{field-regex: pattern}`` pairs.

    The issuer defaults to GitHub's; at least one identity field besides the issuer is required,
    since "signed by anyone on GitHub Actions" is no policy.
    """
    policies: list[IdentityPolicy] = []
    seen_issuer = False
    for key, value in fields.items():
        regex = key.endswith("-regex")
        name = key.removesuffix("-regex")
        if name not in FIELDS:
            raise UsageError(
                f"unknown policy field {key!r}",
                hint=f"known fields: {', '.join(sorted(FIELDS))} (each also with -regex)",
            )
        if not isinstance(value, str):
            raise UsageError(f"policy field {key!r} must be a string, got {type(value).__name__}")
        seen_issuer = seen_issuer or name == "issuer"
        policies.append(claim_policy(name, value, regex=regex))
    if require_signer:
        require_pinned(AllOf(policies), "the identity policy")
    if not seen_issuer and default_issuer is not None:
        policies.insert(0, ClaimPolicy("iss", default_issuer))
    return AllOf(policies)


@dataclass(frozen=True)
class Origin:
    """Where a mapping or list of a policy document was read: the file, its own line and the line
    of each key (or item index). Errors then point at the line a reviewer reads. Pure data: the
    file loader (``opk_sign.verify.options.load_policy_file``) fills it in."""

    source: str
    line: int
    lines: Mapping[Any, int]


class SourceDict(dict[str, Any]):
    """A policy-document mapping that knows where it was read (``origin``); a plain dict, e.g. a
    policy delivered by the trust repository as JSON, simply has no line numbers."""

    origin: Origin | None = None


class SourceList(list[Any]):
    """A policy-document list that knows the line of each item (see :class:`SourceDict`)."""

    origin: Origin | None = None


def policy_from_document(doc: Any, *, default_issuer: str | None = GITHUB_ISSUER) -> AllOf:
    """A policy from a parsed policy file.

    Shape: a mapping of fields (as :data:`FIELDS`, optionally ``-regex``), plus optional
    ``all-of`` / ``any-of`` lists of such mappings, all combined with AND::

        issuer: https://token.actions.githubusercontent.com
        repository: octo-org/app
        any-of:
          - ref: refs/heads/main
          - ref-type: tag

    Every key must be known and every field a non-empty string; an error names the key, and the
    file and line when the document is a :class:`SourceDict`.
    """
    origin = _origin(doc)
    where = "policy" if origin is None else f"policy file {origin.source}"
    return _document(doc, default_issuer, "policy", where)


def _origin(value: Any) -> Origin | None:
    origin = getattr(value, "origin", None)
    return origin if isinstance(origin, Origin) else None


def _at(path: str, container: Any, key: Any = None) -> str:
    """Where an error is: ``path`` in the document, and the file and line when known."""
    origin = _origin(container)
    if origin is None:
        return path
    line = origin.lines.get(key, origin.line) if key is not None else origin.line
    inner = path.removeprefix("policy").lstrip(".")
    return f"policy file {origin.source}, line {line}" + (f" ({inner})" if inner else "")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value!r})" if len(str(value)) <= 40 else "a number"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__


#: Values YAML reads as null or true/false unless quoted: the hint for a field given one.
_QUOTE_HINT: Final = 'quote the value to mean the text, e.g. ref-type: "tag"'


def _field(doc: Mapping[Any, Any], key: str, value: Any, path: str) -> ClaimPolicy:
    at = _at(path, doc, key)
    name = key.removesuffix("-regex")
    if name not in FIELDS or (name in NO_REGEX and key != name):
        raise UsageError(
            f"{at}: unknown policy field {key!r}",
            hint=f"known fields: {', '.join(sorted(FIELDS))} (each also with -regex)"
            ", and all-of / any-of",
        )
    if not isinstance(value, str):
        raise UsageError(
            f"{at}: policy field {key!r} must be a string, got {_kind(value)}",
            hint=_QUOTE_HINT if value is None or isinstance(value, bool) else None,
        )
    try:
        return claim_policy(name, value, regex=key != name)
    except UsageError as err:  # empty value, bad regex: say where
        raise UsageError(f"{at}: {err.message}", hint=err.hint) from None


def _document(doc: Any, default_issuer: str | None, path: str, where: str) -> AllOf:
    """``path`` locates ``doc`` in the document (``policy.any-of[0]``); ``where`` names the whole
    policy in the message refusing one that names no signer."""
    if not isinstance(doc, Mapping):
        raise UsageError(f"{path}: expected a mapping of policy fields, got {_kind(doc)}")
    fields: list[IdentityPolicy] = []
    combined: dict[str, IdentityPolicy] = {}
    signed_in: tuple[str, ...] = ()
    source: dict[str, str] = {}
    transparency: str | None = None
    for key, value in doc.items():
        if not isinstance(key, str):
            raise UsageError(f"{_at(path, doc, key)}: key {key!r} is not a string")
        if key == SIGNED_REPOSITORY_KEY:
            signed_in = _signed_in(doc, value, path)
            continue
        if key in SOURCE_KEYS:
            source[key] = _source_field(doc, key, value, path)
            continue
        if key == TRANSPARENCY_KEY:
            if path != "policy" or value not in ("required", "optional"):
                raise UsageError(
                    f"{_at(path, doc, key)}: 'transparency' is 'required' or 'optional', at the "
                    "top of the policy"
                )
            transparency = str(value)
            continue
        if key not in ("all-of", "any-of"):
            fields.append(_field(doc, key, value, path))
            continue
        at = _at(path, doc, key)
        if not isinstance(value, list) or not value:
            raise UsageError(
                f"{at}: {key!r} must be a non-empty list of policies, got {_kind(value)}"
                if not isinstance(value, list)
                else f"{at}: {key!r} must be a non-empty list of policies"
            )
        subs: list[IdentityPolicy] = []
        for index, item in enumerate(value):
            sub = f"{path}.{key}[{index}]"
            if not isinstance(item, Mapping):
                raise UsageError(
                    f"{_at(sub, value, index)}: expected a mapping of policy fields,"
                    f" got {_kind(item)}"
                )
            subs.append(_document(item, None, sub, where))
        combined[key] = AllOf(subs) if key == "all-of" else AnyOf(subs)
    parts = fields + [combined[k] for k in ("all-of", "any-of") if k in combined]
    if not parts:
        raise UsageError(f"{_at(path, doc)}: the policy is empty and would accept any signer")
    if default_issuer is not None:  # the whole document: every alternative must pin the signer
        require_pinned(AllOf(parts), where)
    if default_issuer is not None and not _mentions_issuer(parts):
        parts.insert(0, ClaimPolicy("iss", default_issuer))
    return AllOf(parts, signed_in, source or None, transparency)


#: The policy-document key naming where copies were signed (``--signed-repository``).
SIGNED_REPOSITORY_KEY: Final = "signed-repository"


def _signed_in(doc: Mapping[Any, Any], value: Any, path: str) -> tuple[str, ...]:
    """``signed-repository``: a name or a list of names, at the top of the document only (an
    alternative of any-of may not widen where signatures come from)."""
    at = _at(path, doc, SIGNED_REPOSITORY_KEY)
    if path != "policy":
        raise UsageError(
            f"{at}: {SIGNED_REPOSITORY_KEY!r} belongs at the top of the policy, not inside "
            "all-of / any-of"
        )
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(name, str) and name for name in names):
        raise UsageError(
            f"{at}: {SIGNED_REPOSITORY_KEY!r} must be a repository name or a non-empty list of "
            f"them, got {_kind(value)}",
            hint="e.g. signed-repository: ghcr.io/octo-org/app",
        )
    try:
        return signed_repositories(names, SIGNED_REPOSITORY_KEY)
    except UsageError as err:
        raise UsageError(f"{at}: {err.message}", hint=err.hint) from None


#: The policy-document key requiring transparency log entries (docs/transparency.md).
TRANSPARENCY_KEY: Final = "transparency"

#: The policy-document keys on what the BuildKit provenance names (docs/official-images.md).
SOURCE_KEYS: Final = ("source-repository", "source-commit")


def _source_field(doc: Mapping[Any, Any], key: str, value: Any, path: str) -> str:
    """``source-repository`` / ``source-commit``: a string, at the top of the document only."""
    at = _at(path, doc, key)
    if path != "policy":
        raise UsageError(f"{at}: {key!r} belongs at the top of the policy, not inside any-of")
    if not isinstance(value, str) or not value:
        raise UsageError(f"{at}: {key!r} must be a non-empty string, got {_kind(value)}")
    return value


#: Policy fields that name the signer, as the CLI spells them, for messages.
PINNING_FIELDS: Final = tuple(f for f, claim in FIELDS.items() if claim in PINNING_CLAIMS)
_PIN_HINT: Final = (
    "require the signer in it: "
    + ", ".join(PINNING_FIELDS)
    + " (a -regex counts only if it cannot match every repository)"
)


#: Longest pattern a policy may hold (a real one is a workflow path and a ref).
MAX_PATTERN_CHARS: Final = 1024
#: Alternatives a pattern may spell out before it is no longer read as naming owners.
_MAX_ALTERNATIVES: Final = 64
#: What every literal prefix of a pattern must start with for the claim to name an owner: the
#: owner, then the separator after it. GitHub owners are first-come, so ``octo-org.*`` or
#: ``octo-.*`` would also accept owners someone else can register.
_OWNER_PREFIX: Final = {
    "repository": re.compile(r"[^/\\]+/"),
    "job_workflow_ref": re.compile(r"[^/\\]+/"),
    "workflow_ref": re.compile(r"[^/\\]+/"),
    "sub": re.compile(r"repo:[^/:]+/"),
}
#: Claims whose pattern must spell out every value it accepts (an owner, a numeric id).
_FINITE: Final = frozenset({"repository_owner", "repository_id", "repository_owner_id"})


def _prefixes(items: Any) -> list[tuple[str, bool]] | None:
    """Every alternative's literal prefix, and whether it is the whole alternative (still open);
    None when the alternatives are too many to tell."""
    states: list[tuple[str, bool]] = [("", True)]
    for op, av in items:
        name = str(op)
        if name == "AT":  # anchors are zero-width; fullmatch anchors anyway
            continue
        if name == "LITERAL":
            options: list[tuple[str, bool]] | None = [(chr(av), True)]
        elif name == "IN" and av and all(str(o) == "LITERAL" for o, _ in av) and len(av) <= 16:
            options = [(chr(v), True) for _, v in av]
        elif name == "SUBPATTERN":
            options = _prefixes(av[3])
        elif name == "BRANCH":
            options = []
            for branch in av[1]:
                found = _prefixes(branch)
                if found is None:
                    return None
                options.extend(found)
        else:
            options = [("", False)]
        if options is None:
            return None
        states = [
            (prefix + more, still) if open_ else (prefix, False)
            for prefix, open_ in states
            for more, still in (options if open_ else [("", False)])
        ]
        states = list(dict.fromkeys(states))
        if len(states) > _MAX_ALTERNATIVES:
            return None
    return states


def regex_names_signer(pattern: str, claim: str) -> bool:
    """Whether an anchored ``pattern`` on ``claim`` accepts only values naming owners it spells
    out: read from the pattern's structure (each alternative's literal prefix), never from
    samples, so no rewording lets ``[A-Za-z0-9-]+`` or ``.*@refs/tags/v.*`` through."""
    from re import _parser  # type: ignore[attr-defined]

    try:
        parsed = _parser.parse(pattern)
    except (re.error, RecursionError, OverflowError):
        return False
    states = _prefixes(parsed.data)
    if not states:
        return False
    if claim in _FINITE:
        return all(open_ and prefix for prefix, open_ in states)
    owner = _OWNER_PREFIX.get(claim)
    return owner is not None and all(owner.match(prefix) for prefix, _ in states)


def matches_anything(pattern: str, claim: str) -> bool:
    """Whether a pattern on a signer claim fails to name the signer (kept for callers)."""
    return not regex_names_signer(pattern, claim)


def pins_signer(policy: IdentityPolicy) -> bool:
    """True when every alternative the policy accepts names the signer."""
    if isinstance(policy, ClaimPolicy):
        if policy.claim not in PINNING_CLAIMS:
            return False
        return not (policy.regex and matches_anything(policy.expected, policy.claim))
    if isinstance(policy, AllOf):
        return any(pins_signer(p) for p in policy.policies)
    if isinstance(policy, AnyOf):
        return all(pins_signer(p) for p in policy.policies)
    return False


def _unpinned(policy: IdentityPolicy) -> str | None:
    """An alternative of ``policy`` that names no signer, described; None when there is none."""
    if pins_signer(policy):
        return None
    if isinstance(policy, AllOf):
        for part in policy.policies:
            if isinstance(part, AnyOf):
                found = _unpinned(part)
                if found is not None:
                    return found
    if isinstance(policy, AnyOf):
        for index, branch in enumerate(policy.policies):
            found = _unpinned(branch)
            if found is not None:
                return f"any-of[{index}] ({found})"
    return policy.describe()


def require_pinned(policy: IdentityPolicy, where: str) -> None:
    """Refuse a policy that some signer from any repository could satisfy."""
    branch = _unpinned(policy)
    if branch is None:
        return
    broad = [
        p
        for p in _claims(policy)
        if p.regex and p.claim in PINNING_CLAIMS and matches_anything(p.expected, p.claim)
    ]
    detail = "".join(f"; /{p.expected}/ matches the {p.claim} of any repository" for p in broad[:3])
    raise UsageError(
        f"{where} names no signer: the alternative {branch} accepts images signed by any "
        f"repository{detail}",
        hint=_PIN_HINT,
    )


def _claims(policy: IdentityPolicy) -> list[ClaimPolicy]:
    if isinstance(policy, ClaimPolicy):
        return [policy]
    if isinstance(policy, AllOf | AnyOf):
        return [c for p in policy.policies for c in _claims(p)]
    return []


def policy_issuers(policy: IdentityPolicy) -> frozenset[str]:
    """The issuers a policy requires by name (``issuer: X``): the issuers it trusts."""
    return frozenset(p.expected for p in _claims(policy) if p.claim == "iss" and not p.regex)


def _mentions_issuer(policies: Sequence[IdentityPolicy]) -> bool:
    for policy in policies:
        if isinstance(policy, ClaimPolicy) and policy.claim == "iss":
            return True
        if isinstance(policy, AllOf) and _mentions_issuer(policy.policies):
            return True
    return False
