"""The session's own request preparation (``_session.prepare_plain``) against requests': the
same method, URL, headers and body for every request it takes, and requests' path (None) for
every request it cannot prepare to the same bytes."""

from __future__ import annotations

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from opk_sign.http import DEFAULT_HTTP
from opk_sign.http._session import new_session, plain_url, prepare_plain

PATH_CHARS = "abcXYZ019-._~/:@!$&'()*+,;=%?# é[]\\\"<>^`{|}"


def reference(
    session: requests.Session,
    method: str,
    url: str,
    params: dict[str, str] | None,
    data: bytes | None,
    headers: dict[str, str] | None,
) -> requests.PreparedRequest:
    request = requests.Request(
        method=method.upper(), url=url, headers=headers, data=data or {}, params=params or {}
    )
    return session.prepare_request(request)


def same(ours: requests.PreparedRequest, theirs: requests.PreparedRequest) -> None:
    assert ours.method == theirs.method
    assert ours.url == theirs.url
    assert dict(ours.headers) == dict(theirs.headers)
    assert ours.body == theirs.body


@settings(max_examples=200, deadline=None)
@given(
    method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "PATCH", "DELETE", "get"]),
    scheme=st.sampled_from(["http", "https", "HTTP"]),
    host=st.sampled_from(
        ["127.0.0.1:5000", "registry.example", "Registry.Example", "reg-1.io:443", "[::1]:5000"]
    ),
    path=st.text(alphabet=PATH_CHARS, max_size=40),
    params=st.none() | st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=3),
    data=st.none() | st.binary(max_size=16),
    headers=st.none()
    | st.dictionaries(
        st.sampled_from(["Accept", "Authorization", "Content-Type", "X-A"]),
        st.text(alphabet="ab c/;=\t", max_size=10),
        max_size=3,
    ),
)
def test_prepared_like_requests(
    method: str,
    scheme: str,
    host: str,
    path: str,
    params: dict[str, str] | None,
    data: bytes | None,
    headers: dict[str, str] | None,
) -> None:
    session = new_session(DEFAULT_HTTP)
    url = f"{scheme}://{host}/{path}"
    try:
        theirs = reference(session, method, url, params, data, headers)
    except (requests.RequestException, ValueError):
        theirs = None
    try:
        ours = prepare_plain(
            session.headers, method, url, params=params, data=data, headers=headers
        )
    except requests.exceptions.InvalidHeader:
        assert theirs is None  # refused on both paths
        return
    if ours is None:
        return  # requests' own path
    assert theirs is not None
    same(ours, theirs)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/v2/a/b/manifests/sha256:" + "a" * 64,
        "https://registry.example/v2/library/app/referrers/sha256:" + "0" * 64,
        "https://registry.example/v2/a/blobs/uploads/?digest=sha256:00",
        "http://localhost:5000/v2/_catalog?n=100&last=x",
    ],
)
def test_registry_urls_take_the_plain_path(url: str) -> None:
    assert plain_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://Registry.example/v2/",  # requests lowers the host
        "http://r.example/v2/a/../b",  # dot segments removed
        "http://r.example/v2/a%2Fb",  # percent escapes requoted
        "http://r.example/v2/a#frag",
        "http://user:pw@r.example/v2/",
        "http://r.example/v2/ä",
        "http://[::1]:5000/v2/",
        "http://r.example",
        "http://r.example/v2/?",
    ],
)
def test_other_urls_take_requests_path(url: str) -> None:
    assert not plain_url(url)


def test_header_injection_refused_as_requests_does() -> None:
    session = new_session(DEFAULT_HTTP)
    with pytest.raises(requests.exceptions.InvalidHeader):
        prepare_plain(
            session.headers,
            "GET",
            "http://r.example/v2/",
            params=None,
            data=None,
            headers={"Authorization": "Bearer x\r\nX-Evil: 1"},
        )


def test_streamed_and_cookie_requests_take_requests_path() -> None:
    session = new_session(DEFAULT_HTTP)
    assert (
        prepare_plain(
            session.headers, "PUT", "http://r.example/v2/", params=None, data=b"", headers=None
        )
        is not None
    )
    import io

    assert (
        prepare_plain(
            session.headers,
            "PUT",
            "http://r.example/v2/",
            params=None,
            data=io.BytesIO(b"x"),
            headers=None,
        )
        is None
    )


def test_session_hooks_still_run() -> None:
    """A response hook on the session (requests merges session hooks into each request) runs on
    the session's own path too: the session with a hook takes requests' path."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        seen: list[str] = []
        session = new_session(DEFAULT_HTTP)
        session.hooks["response"].append(lambda r, *a, **k: seen.append(str(r.url)))
        url = f"http://127.0.0.1:{server.server_port}/v2/"
        session.request("GET", url, params={"a": "b"}).close()
        assert seen == [f"{url}?a=b"]
    finally:
        server.shutdown()
