"""Attack cases: The identity policy: one claim differs."""

from __future__ import annotations

import functools
from typing import Any, Final

from opk_sign.errors import EXIT_POLICY_MISMATCH, PolicyError
from opk_sign.policy import FIELDS, IdentityPolicy, policy_from_fields
from tests.unit.attacks.world import (
    GHES_ISSUER,
    REPOSITORY,
    Run,
    Token,
    World,
    attack,
    issue,
    signed,
    token_bundle,
    two_issuers,
)

# --- identity policy: one claim differs ----------------------------------------------------------

POLICY_GROUP = "identity policy"

#: The signer every policy case starts from, and the value each claim takes in the attack.
BASE_CLAIMS: Final[dict[str, Any]] = {"environment": "production", "event_name": "push"}
TAMPERED_VALUES: Final[dict[str, str]] = {
    "iss": GHES_ISSUER,
    "sub": "repo:octo-org/octo-repo-fork:ref:refs/tags/v1",
    "repository": "octo-org/octo-repo-fork",
    "repository_id": "100000001",
    "repository_owner": "evil-org",
    "repository_owner_id": "10000001",
    "job_workflow_ref": "octo-org/octo-repo/.github/workflows/evil.yml@refs/tags/v1",
    "workflow_ref": "octo-org/octo-repo/.github/workflows/evil.yml@refs/tags/v1",
    "ref": "refs/heads/evil",
    "ref_type": "branch",
    "sha": "e" * 40,
    "event_name": "pull_request_target",
    "runner_environment": "self-hosted",
    "environment": "staging",
}
assert set(TAMPERED_VALUES) == set(FIELDS.values())


@functools.cache
def policy_signer() -> Token:
    return issue(**BASE_CLAIMS)


def full_policy() -> IdentityPolicy:
    """A policy pinning every field of policy.FIELDS to the policy signer's claims."""
    claims = policy_signer().claims
    return policy_from_fields({name: claims[claim] for name, claim in FIELDS.items()})


def _policy_case(name: str, claim: str) -> None:
    value = TAMPERED_VALUES[claim]

    def build(w: World) -> tuple[Run, Run]:
        base = policy_signer()
        if claim == "iss":
            token = issue(issuer=value, **BASE_CLAIMS)
        else:
            token = issue(raw_claims={claim: value}, **BASE_CLAIMS)
        assert {k for k in token.claims if token.claims[k] != base.claims[k]} <= {
            claim,
            "jti",
            "aud",
            "run_id",
            "run_number",
            "check_run_id",
        }
        settings = two_issuers() | {"policy": full_policy()}
        return signed(token_bundle(base), **settings), signed(token_bundle(token), **settings)

    attack(
        POLICY_GROUP,
        f"a valid signature whose `{claim}` claim is {value!r}",
        f"policy field `{name}` (`ClaimPolicy`, runs last)",
        PolicyError,
        f"claim {claim!r} is {value!r}; the policy requires",
        EXIT_POLICY_MISMATCH,
        name=f"policy_{name.replace('-', '_')}_mismatch",
    )(build)


for _name, _claim in FIELDS.items():
    _policy_case(_name, _claim)


@attack(
    POLICY_GROUP,
    "a valid signature from a job without the `environment` the policy requires",
    "policy field `environment` (missing claim)",
    PolicyError,
    "claim 'environment' is missing; the policy requires 'production'",
    EXIT_POLICY_MISMATCH,
)
def policy_environment_missing(w: World) -> tuple[Run, Run]:
    token = issue(**{**BASE_CLAIMS, "environment": None})
    settings = {
        "policy": policy_from_fields({"repository": REPOSITORY, "environment": "production"})
    }
    return signed(token_bundle(policy_signer()), **settings), signed(
        token_bundle(token), **settings
    )


def _regex_case(name: str, pattern: str, good: str, evil: str, what: str) -> None:
    def build(w: World) -> tuple[Run, Run]:
        settings = {"policy": policy_from_fields({"repository-regex": pattern})}
        control = issue(raw_claims={"repository": good})
        tampered = issue(raw_claims={"repository": evil})
        return signed(token_bundle(control), **settings), signed(token_bundle(tampered), **settings)

    attack(
        POLICY_GROUP,
        what,
        "`-regex` fields match the whole claim (`re.fullmatch`)",
        PolicyError,
        f"claim 'repository' is {evil!r}; the policy requires a match of /{pattern}/",
        EXIT_POLICY_MISMATCH,
        name=name,
    )(build)


_regex_case(
    "regex_not_anchored_at_end",
    "octo-org/app",
    "octo-org/app",
    "octo-org/app-evil",
    "`--repository-regex octo-org/app` against the repository `octo-org/app-evil`",
)
_regex_case(
    "regex_not_anchored_at_start",
    "octo-org/app",
    "octo-org/app",
    "evil/octo-org/app",
    "`--repository-regex octo-org/app` against the repository `evil/octo-org/app`",
)
_regex_case(
    "regex_trailing_newline",
    "octo-org/app",
    "octo-org/app",
    "octo-org/app\n",
    "`--repository-regex octo-org/app` against `octo-org/app` + newline (`$` would match it)",
)
_regex_case(
    "regex_alternation_anchored_as_a_whole",
    "octo-org/app|octo-org/lib",
    "octo-org/lib",
    "octo-org/app-evil",
    "`octo-org/app|octo-org/lib` against `octo-org/app-evil` (`^a|b$` anchors one branch each)",
)
