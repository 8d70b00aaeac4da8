"""Attack cases: Issuers, OP keys and time."""

from __future__ import annotations

import dataclasses

from opk_sign.errors import ExpiredTokenError, GQProofError, IssuerError
from opk_sign.pktoken import GITHUB_ISSUER, StaticJWKS
from opk_sign.pktoken.verify import OIDC
from opk_sign.policy import policy_from_fields
from tests.helpers import op_key
from tests.unit.attacks.world import (
    EVIL_ISSUER,
    HOUR,
    NOW,
    REPOSITORY,
    IssuerKeys,
    Run,
    Token,
    World,
    attack,
    issue,
    jwks_of,
    on_signature,
    osm,
    other_op_key,
    signature_bundle,
    signed,
)

# --- issuers, OP keys and time -------------------------------------------------------------------

TRUST = "issuer, OP key and expiry"


@attack(
    TRUST,
    "a genuine PK token from another OIDC provider, valid under that provider's keys",
    "issuer allow-list (`verify_pktoken` step 2)",
    IssuerError,
    f"issuer {EVIL_ISSUER!r} is not trusted",
)
def issuer_not_trusted(w: World) -> tuple[Run, Run]:
    token = issue(op=other_op_key(), issuer=EVIL_ISSUER)
    doc = signature_bundle(token.pk, osm(token.pk, token.user_key))
    keys = IssuerKeys(
        {GITHUB_ISSUER: [op_key().public_jwk()], EVIL_ISSUER: [other_op_key().public_jwk()]}
    )
    trusting = policy_from_fields({"issuer": EVIL_ISSUER, "repository": REPOSITORY})
    control = signed(doc, keys=keys, issuers=frozenset({EVIL_ISSUER}), policy=trusting)
    return control, signed(doc, keys=keys)


@attack(
    TRUST,
    "GitHub's issuer URL with a trailing slash (a look-alike issuer)",
    "issuer allow-list: exact string",
    IssuerError,
    "is not trusted",
)
def issuer_lookalike_trailing_slash(w: World) -> tuple[Run, Run]:
    token = issue(issuer=GITHUB_ISSUER + "/")
    return on_signature(w, signature_bundle(token.pk, osm(token.pk, token.user_key)))


def _forged_github_token(kid: str) -> tuple[Token, StaticJWKS]:
    attacker_op = dataclasses.replace(other_op_key(), kid=kid)
    return issue(op=attacker_op), jwks_of(attacker_op)


@attack(
    TRUST,
    "mints a token as GitHub's issuer with their own RSA key, reusing GitHub's `kid`",
    "GQ header `jkt` = thumbprint of the trusted OP key",
    GQProofError,
    "header jkt does not match the OP key's thumbprint",
)
def op_key_untrusted_with_trusted_kid(w: World) -> tuple[Run, Run]:
    token, own_keys = _forged_github_token(op_key().kid)
    doc = signature_bundle(token.pk, osm(token.pk, token.user_key))
    return signed(doc, keys=own_keys), signed(doc)


@attack(
    TRUST,
    "mints a token as GitHub's issuer with their own RSA key under a new `kid`",
    "key selection by `kid` in the trusted JWKS",
    IssuerError,
    "key 'attacker-key' is not in the JWKS",
)
def op_key_untrusted_with_own_kid(w: World) -> tuple[Run, Run]:
    token, own_keys = _forged_github_token("attacker-key")
    doc = signature_bundle(token.pk, osm(token.pk, token.user_key))
    return signed(doc, keys=own_keys), signed(doc)


@attack(
    TRUST,
    "a genuine token issued 25 hours ago (default 24h policy)",
    "expiry policy `24h` (`verify_pktoken` step 5)",
    ExpiredTokenError,
    "PK token expired under the '24h' policy",
)
def token_expired_25h(w: World) -> tuple[Run, Run]:
    issued = NOW - 25 * HOUR
    token = issue(now=issued)
    doc = signature_bundle(token.pk, osm(token.pk, token.user_key))
    return signed(doc, now=issued + 60), signed(doc, now=NOW)


@attack(
    TRUST,
    "a genuine token whose `iat` lies an hour ahead of the verifier's clock",
    "`iat` at most 5 minutes in the future (`ExpiryPolicy.check`)",
    ExpiredTokenError,
    "PK token issued in the future",
)
def token_from_the_future(w: World) -> tuple[Run, Run]:
    issued = NOW + HOUR
    token = issue(now=issued)
    doc = signature_bundle(token.pk, osm(token.pk, token.user_key))
    return signed(doc, now=issued + 60), signed(doc, now=NOW)


@attack(
    TRUST,
    "a genuine token past its OIDC `exp` under `--expiry-policy oidc`",
    "expiry policy `oidc`",
    ExpiredTokenError,
    "PK token expired under the 'oidc' policy",
)
def token_expired_oidc_exp(w: World) -> tuple[Run, Run]:
    return signed(w.signature, expiry=OIDC, now=NOW + 60), signed(
        w.signature, expiry=OIDC, now=NOW + HOUR
    )


# --- what the OP key may be used for (RFC 7517 `use`, `key_ops`) --------------------------------


def _published_as(**members: object) -> StaticJWKS:
    return StaticJWKS(GITHUB_ISSUER, {"keys": [{**op_key().public_jwk(), **members}]})


def _key_use_case(name: str, what: str, members: dict[str, object], fragment: str) -> None:
    def build(w: World) -> tuple[Run, Run]:
        control = _published_as(key_ops=["verify"], use="sig")
        return signed(w.signature, keys=control), signed(w.signature, keys=_published_as(**members))

    attack(
        TRUST,
        what,
        "OP key `use` and `key_ops` (RFC 7517 §4.2, §4.3)",
        IssuerError,
        fragment,
        name=name,
    )(build)


_key_use_case(
    "op_key_published_for_encryption",
    "the OP key is published with `use: enc`",
    {"use": "enc"},
    "is not an RS256 signing key",
)
_key_use_case(
    "op_key_ops_without_verify",
    "the OP key's `key_ops` allow only `encrypt`",
    {"key_ops": ["encrypt", "wrapKey"]},
    "do not include 'verify'",
)
_key_use_case(
    "op_key_ops_not_a_list",
    "the OP key's `key_ops` is the string 'verify', not a list",
    {"key_ops": "verify"},
    "do not include 'verify'",
)
_key_use_case(
    "op_key_published_for_another_alg",
    "the OP key is published with `alg: PS256`",
    {"alg": "PS256"},
    "is not an RS256 signing key",
)
