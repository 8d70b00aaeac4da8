"""Who signed: the signer identity read from a verified GitHub Actions ID token's claims.

Pure logic. The identity is what verifiers pin (docs/verify.md); here it is also
written as unsigned hints (artifact annotations, the simple-signing payload's ``optional``) and
shown to people. ``job_workflow_ref`` is the principal: in a reusable workflow it names that
workflow, which the calling repository cannot forge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from opk_sign.errors import FormatError


@dataclass(frozen=True)
class Claim:
    """A GitHub Actions ID token claim that says something about the signer."""

    #: The claim's name in the token (and the PK token's payload).
    name: str
    #: Its identity-policy field (flag ``--<field>``, policy-file key), if a policy can require it.
    field: str | None = None
    #: Shown as "who signed" in reports, JSON results and VSAs.
    shown: bool = False
    #: Names the signer: a policy must require one of these in every alternative, since every
    #: other claim (ref, event, environment ...) is satisfied by any repository on GitHub.
    pins_signer: bool = False


#: The one list of signer claims; every other list (policy fields, claims shown) is drawn from it.
CLAIMS: Final = (
    Claim("iss", "issuer", shown=True),
    Claim("sub", "subject", pins_signer=True),
    Claim("repository", "repository", shown=True, pins_signer=True),
    Claim("repository_id", "repository-id", shown=True, pins_signer=True),
    Claim("repository_owner", "owner", shown=True, pins_signer=True),
    Claim("repository_owner_id", "owner-id", pins_signer=True),
    Claim("job_workflow_ref", "signer-workflow", shown=True, pins_signer=True),
    Claim("workflow_ref", "workflow-ref", shown=True, pins_signer=True),
    Claim("ref", "ref", shown=True),
    Claim("ref_type", "ref-type"),
    Claim("sha", "sha", shown=True),
    Claim("event_name", "event", shown=True),
    Claim("run_id"),
    Claim("run_attempt"),
    Claim("runner_environment", "runner-environment", shown=True),
    Claim("environment", "environment"),
)
#: Identity-policy fields (flags and policy-file keys) and the claim each one checks.
POLICY_FIELDS: Final[dict[str, str]] = {c.field: c.name for c in CLAIMS if c.field}
#: Policy fields that take no -regex variant: the issuer picks which keys to fetch.
NO_REGEX: Final = frozenset({"issuer"})
#: Claims that name the signer (repository, owner, workflow, subject).
PINNING_CLAIMS: Final = frozenset(c.name for c in CLAIMS if c.pins_signer)
#: Claims shown as "who signed" in reports and VSAs, in this order.
SHOWN_CLAIMS: Final = tuple(c.name for c in CLAIMS if c.shown)

#: Members named differently from the claims they hold.
_CLAIM_NAMES = {"issuer": "iss", "subject": "sub"}


@dataclass(frozen=True)
class SignerIdentity:
    issuer: str
    subject: str
    repository: str = ""
    repository_id: str = ""
    repository_owner: str = ""
    repository_owner_id: str = ""
    job_workflow_ref: str = ""
    workflow_ref: str = ""
    ref: str = ""
    sha: str = ""
    event_name: str = ""
    run_id: str = ""
    run_attempt: str = ""
    runner_environment: str = ""
    environment: str = ""

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> SignerIdentity:
        values: dict[str, str] = {}
        for spec in fields(cls):
            claim = _CLAIM_NAMES.get(spec.name, spec.name)
            value = claims.get(claim)
            if value is None:
                continue
            if not isinstance(value, str):
                raise FormatError(f"the ID token's {claim!r} claim is not a string: {value!r}")
            values[spec.name] = value
        if not values.get("issuer") or not values.get("subject"):
            raise FormatError("the ID token has no iss or sub claim")
        return cls(**values)

    @property
    def principal(self) -> str:
        """The one string that names the signer: the job's workflow, else the subject."""
        return self.job_workflow_ref or self.subject

    def to_dict(self) -> dict[str, str]:
        """Every known member, empty ones left out."""
        return {k: v for k, v in asdict(self).items() if v}

    def __str__(self) -> str:
        return self.principal
