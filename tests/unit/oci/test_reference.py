"""Image references: docker's normalisation, refusals with reasons, and round-trip properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opk_sign.errors import UsageError
from opk_sign.oci.reference import Reference

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("alpine", "docker.io", "library/alpine", "latest", None),
        ("alpine:3.20", "docker.io", "library/alpine", "3.20", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("docker.io/alpine", "docker.io", "library/alpine", "latest", None),
        ("index.docker.io/library/alpine:1", "docker.io", "library/alpine", "1", None),
        ("ghcr.io/octo-org/octo-repo:v1", "ghcr.io", "octo-org/octo-repo", "v1", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/a/b/c:tag", "localhost:5000", "a/b/c", "tag", None),
        ("127.0.0.1:5000/app@" + D, "127.0.0.1:5000", "app", None, D),
        ("127.0.0.1:5000/app:v1@" + D, "127.0.0.1:5000", "app", "v1", D),
        ("[::1]:5000/app:v1", "[::1]:5000", "app", "v1", None),
        ("Registry.Example.com/app", "Registry.Example.com", "app", "latest", None),
        ("example.com/a__b/c-d/e.f_g", "example.com", "a__b/c-d/e.f_g", "latest", None),
        ("example.com/a---b:_tag.x-Y", "example.com", "a---b", "_tag.x-Y", None),
        ("alpine@" + D, "docker.io", "library/alpine", None, D),
    ],
)
def test_docker_normalisation(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" alpine", "whitespace"),
        ("Alpine", "must be lowercase"),
        ("example.com/App", "must be lowercase"),
        ("example.com/app:", "invalid tag"),
        ("example.com/app:-x", "invalid tag"),
        ("example.com/app:" + "x" * 129, "invalid tag"),
        ("example.com/app@sha256:abc", "64 lowercase hex"),
        ("example.com/app@sha256:" + "A" * 64, "64 lowercase hex"),
        ("example.com/app@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("example.com/app@", "invalid digest"),
        ("a" * 64, "image ID"),
        ("example.com//app", "invalid repository path component"),
        ("example.com/app/", "invalid repository path component"),
        ("example.com/a..b", "invalid repository path component"),
        ("-bad.com/app", "invalid registry"),
        ("example.com:port/app", "invalid"),
        ("example.com/" + "a" * 250, "longer than 255"),
    ],
)
def test_invalid_references_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(UsageError, match=reason) as refused:
        Reference.parse(text)
    assert refused.value.exit_code == 2


def test_api_host_scheme_and_helpers() -> None:
    hub = Reference.parse("alpine")
    assert hub.api_base == "https://registry-1.docker.io"
    local = Reference.parse("127.0.0.1:5000/app:v1")
    assert local.api_base == "http://127.0.0.1:5000"
    assert Reference.parse("localhost:5000/app").scheme == "http"
    assert Reference.parse("[::1]:5000/app").scheme == "http"
    assert Reference.parse("127.9.9.9/app").scheme == "http"
    assert Reference.parse("128.0.0.1/app").scheme == "https"
    assert Reference.parse("localhost.example.com/app").scheme == "https"
    pinned = local.with_digest(D)
    assert str(pinned) == f"127.0.0.1:5000/app:v1@{D}"
    assert pinned.identifier == D
    assert local.identifier == "v1"
    assert str(local.repo()) == "127.0.0.1:5000/app"
    assert Reference.parse("127.0.0.1:5000/app", default_tag=None).tag is None
    with pytest.raises(UsageError):
        local.with_digest("sha256:nothex")
    with pytest.raises(UsageError):
        local.repo().identifier  # noqa: B018 - the property raises


component = st.from_regex(r"[a-z0-9]{1,6}((\.|_|__|-{1,3})[a-z0-9]{1,6}){0,2}", fullmatch=True)
#: A port as written: digits (leading zeros too) naming a port that exists.
port = st.from_regex(r"[0-9]{1,5}", fullmatch=True).filter(lambda p: int(p) <= 65535)
domain = st.one_of(
    st.just("docker.io"),
    st.tuples(
        st.from_regex(r"[a-z0-9]{1,8}(\.[a-z0-9]{1,8}){1,2}", fullmatch=True),
        st.none() | port,
    ).map(lambda hp: hp[0] if hp[1] is None else f"{hp[0]}:{hp[1]}"),
    (st.none() | port).map(lambda p: "localhost" if p is None else f"localhost:{p}"),
    st.tuples(st.from_regex(r"127\.0\.0\.[0-9]{1,3}", fullmatch=True), port).map(":".join),
)
tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
digest = st.from_regex(r"sha256:[0-9a-f]{64}", fullmatch=True)


@given(
    domain,
    st.lists(component, min_size=1, max_size=3),
    st.one_of(st.none(), tag),
    st.one_of(st.none(), digest),
)
def test_canonical_form_round_trips(
    registry: str, path: list[str], tag: str | None, digest: str | None
) -> None:
    if registry == "docker.io" and len(path) == 1:
        path = ["library", *path]
    if tag is None and digest is None:
        tag = "latest"
    ref = Reference(registry, "/".join(path), tag, digest)
    assert Reference.parse(str(ref)) == ref
    assert Reference.parse(str(Reference.parse(str(ref)))) == ref


@given(st.text(max_size=80))
def test_any_text_parses_or_is_refused_as_usage(text: str) -> None:
    try:
        ref = Reference.parse(text)
    except UsageError:
        return
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(
    "text",
    [
        "ghcr.io:99999/o/app:1",  # no such port: a usage error, not a network one
        "ghcr.io/o/app:vé",  # tags are ASCII (distribution spec): no registry request for them
        "ghcr.io/o/app:\uff561",  # a fullwidth v
    ],
)
def test_references_the_spec_does_not_allow_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        Reference.parse(text)


def test_a_digest_with_a_final_newline_is_not_a_digest() -> None:
    from opk_sign.oci.digest import split_digest

    with pytest.raises(UsageError):
        split_digest("sha256:" + "ab" * 32 + "\n")
