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

from opk_sign.claims import CLAIMS
from opk_sign.errors import FormatError

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
