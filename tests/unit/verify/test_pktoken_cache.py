"""The run's PK token cache (issue 13): a token verified once skips its CIC and GQ256 checks on
every later use against the same OP key and issuers, and nothing else is skipped: the key is
looked up every time, the expiry judged every time, a tampered token or another key verified in
full, and every attack of the catalogue still refused with a warm cache."""

from __future__ import annotations

import copy
import gc
import pickle
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from opk_sign.errors import ExpiredTokenError, GQProofError, IssuerError, OpkSignError
from opk_sign.pktoken import GITHUB_ISSUER, StaticJWKS, gq
from opk_sign.pktoken import verify as pkverify
from opk_sign.pktoken.token import PKToken, Signature
from opk_sign.pktoken.verify import PKTokenCache, VerifiedPKToken, verify_pktoken
from opk_sign.verify import bundle as bundle_module
from opk_sign.verify.options import VerifyOptions
from tests.helpers import op_key
from tests.unit.attacks import test_catalogue  # fills the catalogue
from tests.unit.attacks.world import (
    CATALOGUE,
    GHES_ISSUER,
    HOUR,
    NOW,
    POLICY,
    issue,
    jwks_of,
    other_op_key,
)

KEYS = jwks_of(op_key())
ISSUERS = frozenset({GITHUB_ISSUER})


@pytest.fixture
def gq_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every GQ256 verification made (the expensive check the cache spares)."""
    calls: list[str] = []
    real = gq.verify_jwt

    def counting(token: str, jwk: Any) -> Any:
        calls.append(token)
        return real(token, jwk)

    monkeypatch.setattr(gq, "verify_jwt", counting)
    return calls


@pytest.fixture
def cic_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every CIC signature verification made."""
    calls: list[str] = []
    real = getattr(pkverify, "verify")  # noqa: B009 - the JWS check verify.py imported

    def counting(*args: Any) -> None:
        if args[-1] == "CIC":
            calls.append(args[-1])
        real(*args)

    monkeypatch.setattr(pkverify, "verify", counting)
    return calls


def check(
    pkt: PKToken,
    cache: PKTokenCache | None,
    *,
    keys: Any = KEYS,
    issuers: frozenset[str] = ISSUERS,
    now: float = NOW + 60,
) -> VerifiedPKToken:
    return verify_pktoken(pkt, keys, issuers=issuers, now=now, cache=cache)


def test_a_token_verified_once_skips_cic_and_gq_afterwards(
    gq_calls: list[str], cic_calls: list[str]
) -> None:
    token = issue()
    cache = PKTokenCache()
    first = check(token.pkt, cache)
    second = check(token.pkt, cache)
    third = check(PKToken.from_compact(token.pkt.to_compact()), cache)  # same token, re-read
    assert len(gq_calls) == 1 and len(cic_calls) == 1
    assert (cache.misses, cache.hits, len(cache)) == (1, 2, 1)
    assert first == second == third
    assert third.claims["repository"] == token.claims["repository"]


def test_without_a_cache_every_verification_is_full(gq_calls: list[str]) -> None:
    token = issue()
    check(token.pkt, None)
    check(token.pkt, None)
    assert len(gq_calls) == 2


def test_distinct_tokens_are_verified_each(gq_calls: list[str]) -> None:
    cache = PKTokenCache()
    for token in (issue(), issue(), issue()):
        check(token.pkt, cache)
        check(token.pkt, cache)
    assert len(gq_calls) == 3
    assert (cache.misses, cache.hits) == (3, 3)


def test_an_expired_use_of_a_cached_token_still_fails(gq_calls: list[str]) -> None:
    token = issue()
    cache = PKTokenCache()
    check(token.pkt, cache, now=NOW + 60)
    with pytest.raises(ExpiredTokenError, match="expired under the '24h' policy"):
        check(token.pkt, cache, now=NOW + 25 * HOUR)
    with pytest.raises(ExpiredTokenError, match="issued in the future"):
        check(token.pkt, cache, now=NOW - HOUR)
    assert len(gq_calls) == 1  # judged from the cache: the expiry is never cached
    check(token.pkt, cache, now=NOW + 23 * HOUR)  # and in the window it passes again


def test_a_failed_verification_is_not_cached(gq_calls: list[str]) -> None:
    token = issue()
    cache = PKTokenCache()
    with pytest.raises(ExpiredTokenError):
        check(token.pkt, cache, now=NOW + 25 * HOUR)
    assert len(cache) == 0
    check(token.pkt, cache)
    assert len(gq_calls) == 2 and len(cache) == 1


def test_another_key_under_the_same_kid_does_not_hit_the_cache(gq_calls: list[str]) -> None:
    """A key source answering another key for the token's kid (the OP rotated, or another run's
    trust): the token is verified against that key, and fails."""
    token = issue()
    cache = PKTokenCache()
    check(token.pkt, cache)
    impostor = other_op_key(op_key().kid)  # another RSA key, the same kid
    with pytest.raises(GQProofError):
        check(token.pkt, cache, keys=jwks_of(impostor))
    assert len(gq_calls) == 2
    check(token.pkt, cache)  # the entry for the right key is still good
    assert len(gq_calls) == 2


def test_the_key_is_looked_up_on_every_use(gq_calls: list[str]) -> None:
    token = issue()
    cache = PKTokenCache()
    check(token.pkt, cache)
    asked: list[tuple[str, str | None, int]] = []

    class Recording:
        def op_key(self, issuer: str, kid: str | None, issued_at: int) -> Any:
            asked.append((issuer, kid, issued_at))
            return KEYS.op_key(issuer, kid, issued_at)

    check(token.pkt, cache, keys=Recording())
    assert asked == [(GITHUB_ISSUER, op_key().kid, NOW)]
    with pytest.raises(IssuerError, match="no keys configured"):
        check(token.pkt, cache, keys=StaticJWKS("https://other.example", {"keys": []}))
    with pytest.raises(IssuerError, match="not in the JWKS"):
        check(token.pkt, cache, keys=jwks_of(other_op_key()))
    assert len(gq_calls) == 1


def test_a_key_published_with_other_members_is_another_key(gq_calls: list[str]) -> None:
    token = issue()
    cache = PKTokenCache()
    check(token.pkt, cache)
    jwk = dict(op_key().public_jwk())
    with pytest.raises(IssuerError, match="not an RS256 signing key"):
        check(token.pkt, cache, keys=StaticJWKS(GITHUB_ISSUER, {"keys": [jwk | {"use": "enc"}]}))
    check(token.pkt, cache, keys=StaticJWKS(GITHUB_ISSUER, {"keys": [jwk | {"x5t": "other"}]}))
    assert len(gq_calls) == 2  # same material, other members: verified afresh (and passes)


def test_other_allowed_issuers_do_not_hit_the_cache(gq_calls: list[str]) -> None:
    token = issue()
    cache = PKTokenCache()
    check(token.pkt, cache)
    with pytest.raises(IssuerError, match="is not trusted"):
        check(token.pkt, cache, issuers=frozenset({GHES_ISSUER}))
    check(token.pkt, cache, issuers=frozenset({GITHUB_ISSUER, GHES_ISSUER}))
    assert len(gq_calls) == 2


def test_a_tampered_token_is_verified_in_full(gq_calls: list[str]) -> None:
    token = issue()
    cache = PKTokenCache()
    check(token.pkt, cache)
    signature = token.pkt.op.signature_b64
    flipped = signature[:-5] + ("A" if signature[-5] != "A" else "B") + signature[-4:]
    tampered = PKToken(
        token.pkt.payload_b64, Signature(token.pkt.op.protected_b64, flipped), token.pkt.cic
    )
    with pytest.raises(OpkSignError):
        check(tampered, cache)
    assert len(gq_calls) == 2


def test_the_cache_is_bounded() -> None:
    cache = PKTokenCache(max_entries=2)
    tokens = [issue() for _ in range(3)]
    for token in tokens:
        check(token.pkt, cache)
    assert len(cache) == 2
    check(tokens[0].pkt, cache)  # the oldest went first
    assert cache.misses == 4
    with pytest.raises(ValueError):
        PKTokenCache(max_entries=0)


def test_threads_share_the_cache(gq_calls: list[str]) -> None:
    token = issue()
    cache = PKTokenCache()
    check(token.pkt, cache)
    failures: list[BaseException] = []

    def many() -> None:
        try:
            for _ in range(50):
                check(token.pkt, cache)
        except BaseException as err:  # pragma: no cover - reported below
            failures.append(err)

    threads = [threading.Thread(target=many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert len(gq_calls) == 1 and cache.hits == 400


def test_pickled_it_is_the_same_runs_cache_never_its_entries() -> None:
    token = issue()
    cache = PKTokenCache(max_entries=7)
    check(token.pkt, cache)
    data = pickle.dumps(cache)
    assert token.pkt.payload_b64.encode() not in data and len(data) < 200
    assert pickle.loads(data) is cache  # in the process that owns it: itself
    options = VerifyOptions(policy=POLICY, keys=KEYS, issuers=ISSUERS, pktoken_cache=cache)
    assert copy.deepcopy(options).pktoken_cache is cache
    uid = cache.uid
    del cache, options
    gc.collect()
    elsewhere = pickle.loads(data)  # as in a worker process: the run's cache, empty
    assert (elsewhere.uid, elsewhere.max_entries, len(elsewhere)) == (uid, 7, 0)


def test_options_get_a_cache_each_and_compare_without_it() -> None:
    one = VerifyOptions(policy=POLICY, keys=KEYS, issuers=ISSUERS)
    two = VerifyOptions(policy=POLICY, keys=KEYS, issuers=ISSUERS)
    assert one.pktoken_cache is not two.pktoken_cache
    assert one == two


# --- the attack catalogue, with a warm cache ------------------------------------------------------


@pytest.fixture
def shared_cache(monkeypatch: pytest.MonkeyPatch) -> Iterator[PKTokenCache]:
    """Every bundle verification of the catalogue through one cache, as in one run."""
    cache = PKTokenCache()
    real: Callable[..., VerifiedPKToken] = getattr(bundle_module, "verify_pktoken")  # noqa: B009

    def cached(*args: Any, **kwargs: Any) -> VerifiedPKToken:
        kwargs["cache"] = kwargs.get("cache") or cache
        return real(*args, **kwargs)

    monkeypatch.setattr(bundle_module, "verify_pktoken", cached)
    yield cache


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.name for c in CATALOGUE])
def test_every_attack_is_refused_after_its_control_warmed_the_cache(
    case: Any, shared_cache: PKTokenCache
) -> None:
    control, tampered = test_catalogue.runs(case.name)
    control()
    control()  # the second time from the cache
    with pytest.raises(OpkSignError) as info:
        tampered()
    assert type(info.value) is case.error, f"{type(info.value).__name__}: {info.value}"
    assert case.fragment in info.value.message
    control()


def test_the_catalogue_hits_the_cache(shared_cache: PKTokenCache, gq_calls: list[str]) -> None:
    control, _ = test_catalogue.runs(CATALOGUE[0].name)
    control()
    control()
    assert shared_cache.hits >= 1 and len(gq_calls) == 1
