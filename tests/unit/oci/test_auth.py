"""WWW-Authenticate challenges and token scopes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opk_sign.oci.auth import Challenge, Scope, basic_authorization, parse_challenges
from opk_sign.oci.credentials import Credential


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
            'scope="repository:library/alpine:pull"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/alpine:pull",
                    },
                )
            ],
        ),
        (
            'Bearer realm="https://ghcr.io/token",service="ghcr.io",'
            'scope="repository:o/r:pull,push repository:o/base:pull"',
            [
                Challenge(
                    "bearer",
                    {
                        "realm": "https://ghcr.io/token",
                        "service": "ghcr.io",
                        "scope": "repository:o/r:pull,push repository:o/base:pull",
                    },
                )
            ],
        ),
        ('Basic realm="Registry Realm"', [Challenge("basic", {"realm": "Registry Realm"})]),
        ("basic REALM=plain", [Challenge("basic", {"realm": "plain"})]),
        (
            'Negotiate abc==, Basic realm="x", BEARER realm = "y" , error="insufficient_scope"',
            [
                Challenge("negotiate", {}),
                Challenge("basic", {"realm": "x"}),
                Challenge("bearer", {"realm": "y", "error": "insufficient_scope"}),
            ],
        ),
        (
            'Bearer realm="a \\"quoted\\" realm, with comma"',
            [Challenge("bearer", {"realm": 'a "quoted" realm, with comma'})],
        ),
        ("", []),
        ("Bearer", [Challenge("bearer", {})]),
    ],
)
def test_parse_challenges(header: str, expected: list[Challenge]) -> None:
    assert parse_challenges(header) == expected


def test_challenge_properties() -> None:
    (challenge,) = parse_challenges(
        'Bearer realm="r",service="s",scope="repository:a:pull repository:b:push",'
        'error="insufficient_scope"'
    )
    assert challenge.realm == "r"
    assert challenge.service == "s"
    assert challenge.scopes == ("repository:a:pull", "repository:b:push")
    assert challenge.error == "insufficient_scope"


@given(st.text(max_size=200))
def test_parsing_never_fails(header: str) -> None:
    for challenge in parse_challenges(header):
        assert challenge.scheme == challenge.scheme.lower()


def test_scopes() -> None:
    pull = Scope.repository("library/alpine")
    push = Scope.repository("library/alpine", push=True)
    assert str(pull) == "repository:library/alpine:pull"
    assert str(push) == "repository:library/alpine:pull,push"
    assert push.covers(pull)
    assert not pull.covers(push)
    assert not push.covers(Scope.repository("library/other"))
    assert Scope.parse("repository:a/b:push,pull") == push.__class__(
        "repository", "a/b", frozenset({"pull", "push"})
    )
    assert Scope.parse("repository:a:*").covers(Scope.repository("a", push=True))  # type: ignore[union-attr]
    assert Scope.parse("registry:catalog:*") == Scope("registry", "catalog", frozenset({"*"}))
    assert Scope.parse("nonsense") is None


def test_basic_authorization_and_secret_free_repr() -> None:
    credential = Credential(username="alice", password="s3cret", source="test")
    assert basic_authorization(credential) == "Basic YWxpY2U6czNjcmV0"
    assert "s3cret" not in repr(credential)
    assert "***" in repr(credential)
    assert Credential().anonymous
