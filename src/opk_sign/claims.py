"""The GitHub Actions ID token claims that say who signed, and the identity-policy fields that
check them: one table every list is drawn from (:mod:`opk_sign.identity` holds the identity).

Apart, and with no dataclasses, so that the command line can list its policy flags in
``--help`` without loading the verification code (issue 13, start-up).
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Claim(NamedTuple):
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
