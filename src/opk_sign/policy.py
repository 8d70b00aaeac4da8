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

from opk_sign.errors import PolicyError, UsageError
from opk_sign.identity import POLICY_FIELDS
from opk_sign.pktoken import GITHUB_ISSUER

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
            try:
                re.compile(self.expected)
            except re.error as err:
                raise UsageError(
                    f"invalid regular expression for {self.claim!r}: {err}",
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
        return " and ".join(_group(p) for p in self.policies)


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


#: Policy fields that take no -regex variant: the issuer picks which keys to fetch.
NO_REGEX: Final = frozenset({"issuer"})


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
        policies.append(ClaimPolicy(FIELDS[name], value, regex))
    if require_signer and not _names_signer(policies):
        raise UsageError(
            "the identity policy names no signer",
            hint="require at least --repository (or --owner, --signer-workflow ...)",
        )
    if not seen_issuer and default_issuer is not None:
        policies.insert(0, ClaimPolicy("iss", default_issuer))
    return AllOf(policies)


def policy_from_document(doc: Any, *, default_issuer: str | None = GITHUB_ISSUER) -> AllOf:
    """A policy from a parsed policy file.

    Shape: a mapping of fields (as :data:`FIELDS`, optionally ``-regex``), plus optional
    ``all-of`` / ``any-of`` lists of such mappings, all combined with AND::

        issuer: https://token.actions.githubusercontent.com
        repository: octo-org/app
        any-of:
          - ref: refs/heads/main
          - ref-type: tag
    """
    return _document(doc, default_issuer, "policy")


def _document(doc: Any, default_issuer: str | None, where: str) -> AllOf:
    if not isinstance(doc, Mapping):
        raise UsageError(f"{where}: expected a mapping of policy fields")
    fields = {k: v for k, v in doc.items() if k not in ("all-of", "any-of")}
    parts: list[IdentityPolicy] = []
    if fields:
        parts.extend(policy_from_fields(fields, default_issuer=None, require_signer=False).policies)
    for key, combine in (("all-of", AllOf), ("any-of", AnyOf)):
        if key not in doc:
            continue
        items = doc[key]
        if not isinstance(items, list) or not items:
            raise UsageError(f"{where}: {key!r} must be a non-empty list of policies")
        subs = [_document(item, None, f"{where}.{key}[{i}]") for i, item in enumerate(items)]
        parts.append(combine(subs))
    if not parts:
        raise UsageError(f"{where}: the policy is empty and would accept any signer")
    if default_issuer is not None and not _names_signer(parts):
        raise UsageError(
            f"{where}: the policy names no signer, only an issuer",
            hint="require at least repository (or owner, signer-workflow ...)",
        )
    if default_issuer is not None and not _mentions_issuer(parts):
        parts.insert(0, ClaimPolicy("iss", default_issuer))
    return AllOf(parts)


def _names_signer(policies: Sequence[IdentityPolicy]) -> bool:
    """True when some claim other than the issuer is constrained."""
    for policy in policies:
        if isinstance(policy, ClaimPolicy) and policy.claim != "iss":
            return True
        if isinstance(policy, AllOf | AnyOf) and _names_signer(policy.policies):
            return True
    return False


def _mentions_issuer(policies: Sequence[IdentityPolicy]) -> bool:
    for policy in policies:
        if isinstance(policy, ClaimPolicy) and policy.claim == "iss":
            return True
        if isinstance(policy, AllOf) and _mentions_issuer(policy.policies):
            return True
    return False
