"""Plain HTTP to registries named insecure (issue 12): the values, the scheme decisions, the token
realm rule and the warning. The end-to-end run on a non-loopback address is
tests/integration/test_insecure_registry.py."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from opk_sign.cli.main import build_parser, main
from opk_sign.cli.options import registry_client
from opk_sign.errors import EXIT_REGISTRY, EXIT_USAGE, RegistryAuthError, UsageError
from opk_sign.http import DEFAULT_HTTP
from opk_sign.names import ENV_INSECURE_REGISTRIES
from opk_sign.oci.auth import Authenticator, Scope
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.credentials import ExplicitCredentials
from opk_sign.oci.keychain import Keychain
from opk_sign.oci.reference import Reference
from opk_sign.urls import (
    InsecureRegistries,
    parse_registry_host,
    registry_host_key,
)

ENV = f"${ENV_INSECURE_REGISTRIES}"

# --- values ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("10.0.0.5:5000", "10.0.0.5:5000"),
        ("10.0.0.5", "10.0.0.5"),
        ("Registry.Internal", "registry.internal"),
        ("registry.internal:443", "registry.internal:443"),
        ("reg-1.corp.example:5000", "reg-1.corp.example:5000"),
        ("[FD00::1]:5000", "[fd00::1]:5000"),
        ("[fd00::1]", "[fd00::1]"),
        ("10.0.0.5:05000", "10.0.0.5:5000"),
        (" 10.0.0.5:5000 ", "10.0.0.5:5000"),
        ("localhost:5000", "localhost:5000"),
    ],
)
def test_valid_names(value: str, key: str) -> None:
    assert parse_registry_host(value, "--insecure-registry") == key
    assert registry_host_key(value) == key


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("http://10.0.0.5:5000", "is a URL"),
        ("https://registry.internal", "is a URL"),
        ("10.0.0.5:5000/v2", "has a path"),
        ("10.0.0.0/8", "has a path"),
        ("registry.internal/team/app", "has a path"),
        ("*.corp.example", "not a registry name"),
        ("a b", "not a registry name"),
        ("10.0.0.5:", "not a registry name"),
        ("10.0.0.5:port", "not a registry name"),
        ("-bad.example", "not a registry name"),
        ("user@10.0.0.5", "not a registry name"),
        ("10.0.0.5:0", "port must be 1-65535"),
        ("10.0.0.5:65536", "port must be 1-65535"),
    ],
)
def test_invalid_names_are_usage_errors_with_a_hint(value: str, says: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_registry_host(value, "--insecure-registry")
    assert caught.value.exit_code == EXIT_USAGE
    assert str(caught.value).startswith("--insecure-registry: ")
    assert says in str(caught.value)
    if "port" not in says:
        assert caught.value.hint


@pytest.mark.parametrize(
    ("value", "hosts"),
    [
        ("10.0.0.5:5000", ("10.0.0.5:5000",)),
        ("a.example:1,b.example:2", ("a.example:1", "b.example:2")),
        ("a.example:1 b.example:2", ("a.example:1", "b.example:2")),
        (
            "  a.example:1 ,\n b.example:2\t c.example  ",
            ("a.example:1", "b.example:2", "c.example"),
        ),
        ("a.example:1,a.example:1", ("a.example:1",)),
        ("", ()),
        ("   ", ()),
    ],
)
def test_environment_lists(value: str, hosts: tuple[str, ...]) -> None:
    insecure = InsecureRegistries.from_environment({ENV_INSECURE_REGISTRIES: value})
    assert insecure.hosts == tuple(sorted(hosts))
    assert all(insecure.source(host) == ENV for host in hosts)


def test_environment_unset_names_none() -> None:
    assert InsecureRegistries.from_environment({}).hosts == ()


@pytest.mark.parametrize("value", ["a.example,,b.example", "a.example,", ",a.example", "http://x"])
def test_environment_errors_name_the_variable(value: str) -> None:
    with pytest.raises(UsageError) as caught:
        InsecureRegistries.from_environment({ENV_INSECURE_REGISTRIES: value})
    assert str(caught.value).startswith(f"{ENV}: ")
    assert caught.value.hint


def test_union_keeps_the_first_source() -> None:
    flag = InsecureRegistries.parse(["10.0.0.5:5000"])
    env = InsecureRegistries.from_environment({ENV_INSECURE_REGISTRIES: "10.0.0.5:5000 b:1"})
    both = flag.union(env)
    assert both.hosts == ("10.0.0.5:5000", "b:1")
    assert both.source("10.0.0.5:5000") == "--insecure-registry"
    assert both.source("b:1") == ENV


# --- scheme decisions --------------------------------------------------------------------------

NAMED = InsecureRegistries.parse(["10.0.0.5:5000", "registry.internal", "[fd00::1]:5000"])


@pytest.mark.parametrize(
    ("registry", "scheme"),
    [
        # loopback: plain HTTP without being named, as docker does
        ("127.0.0.1:5000", "http"),
        ("localhost:5000", "http"),
        ("[::1]:5000", "http"),
        # named: plain HTTP, exactly as written (host case aside)
        ("10.0.0.5:5000", "http"),
        ("registry.internal", "http"),
        ("REGISTRY.internal", "http"),
        ("[fd00::1]:5000", "http"),
        # port-exact: a name with a port is that port only, a name without one no port
        ("10.0.0.5:5001", "https"),
        ("10.0.0.5", "https"),
        ("registry.internal:5000", "https"),
        ("registry.internal:443", "https"),
        ("[fd00::1]", "https"),
        # anything else: HTTPS, never implied by a neighbour
        ("10.0.0.6:5000", "https"),
        ("sub.registry.internal", "https"),
        ("ghcr.io", "https"),
        ("docker.io", "https"),
    ],
)
def test_scheme(registry: str, scheme: str) -> None:
    assert NAMED.scheme(registry) == scheme
    ref = Reference.parse(f"{registry}/team/app:v1")
    assert ref.api_base_with(NAMED).startswith(f"{scheme}://")
    with RegistryClient(Keychain.anonymous(), insecure_registries=NAMED) as client:
        assert client.transport.base(ref) == f"{scheme}://{ref.api_host}"


def test_nothing_named_is_loopback_only() -> None:
    none = InsecureRegistries()
    assert none.scheme("127.0.0.1:5000") == "http"
    assert none.scheme("10.0.0.5:5000") == "https"
    # The reference itself stays pure: its own scheme knows loopback only.
    assert Reference.parse("10.0.0.5:5000/a:v1").scheme == "https"
    assert Reference.parse("10.0.0.5:5000/a:v1").api_base_with(NAMED) == "http://10.0.0.5:5000"


def test_docker_hub_api_host() -> None:
    ref = Reference.parse("alpine")
    assert ref.api_base_with(NAMED) == "https://registry-1.docker.io"


def test_client_reads_the_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_INSECURE_REGISTRIES, "10.0.0.5:5000")
    ref = Reference.parse("10.0.0.5:5000/a:v1")
    with RegistryClient(Keychain.anonymous()) as client:
        assert client.insecure_registries.hosts == ("10.0.0.5:5000",)
        assert client.transport.base(ref) == "http://10.0.0.5:5000"
    # An explicit value replaces the environment's.
    with RegistryClient(Keychain.anonymous(), insecure_registries=InsecureRegistries()) as client:
        assert client.transport.base(ref) == "https://10.0.0.5:5000"
    monkeypatch.setenv(ENV_INSECURE_REGISTRIES, "https://10.0.0.5:5000")
    with pytest.raises(UsageError, match=ENV_INSECURE_REGISTRIES):
        RegistryClient(Keychain.anonymous())
    monkeypatch.delenv(ENV_INSECURE_REGISTRIES)
    with RegistryClient(Keychain.anonymous()) as client:
        assert client.transport.base(ref) == "https://10.0.0.5:5000"


# --- the warning -------------------------------------------------------------------------------


def test_warning_once_per_host_naming_its_source() -> None:
    env = InsecureRegistries.from_environment({ENV_INSECURE_REGISTRIES: "b.example:1"})
    said: list[str] = []
    client = RegistryClient(
        Keychain.anonymous(), insecure_registries=NAMED.union(env), notice=said.append
    )
    with client:
        for _ in range(3):
            client.transport.plain_http("10.0.0.5:5000")
        client.transport.plain_http("b.example:1")
        client.transport.plain_http("B.EXAMPLE:1")
        client.transport.plain_http("storage.example")  # an upload Location the registry gave
    assert said == [
        "warning: plain HTTP to 10.0.0.5:5000 (--insecure-registry): anyone on the network can "
        "read and change what is sent",
        f"warning: plain HTTP to b.example:1 ({ENV}): anyone on the network can read and change "
        "what is sent",
        "warning: plain HTTP to storage.example (the registry sent us there): anyone on the "
        "network can read and change what is sent",
    ]


# --- the token realm ---------------------------------------------------------------------------


class _TokenServer(BaseAdapter):
    """Answers every request with a token, recording the URLs asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Any = None,
    ) -> requests.Response:
        self.asked.append(request.url or "")
        resp = requests.Response()
        resp.status_code = 200
        resp.raw = io.BytesIO(json.dumps({"token": "t0ken", "expires_in": 300}).encode())
        resp.url = request.url or ""
        resp.request = request
        return resp

    def close(self) -> None:
        pass


def _authenticator(
    insecure: InsecureRegistries, warned: list[str]
) -> tuple[Authenticator, _TokenServer]:
    server = _TokenServer()
    session = requests.Session()
    session.mount("http://", server)
    session.mount("https://", server)
    keychain = Keychain([ExplicitCredentials.for_registry("10.0.0.5:5000", token="secret")])
    auth = Authenticator(
        session, keychain, DEFAULT_HTTP, insecure=insecure, plain_http=warned.append
    )
    return auth, server


def _respond(auth: Authenticator, realm: str) -> str:
    header = f'Bearer realm="{realm}",service="registry"'
    return auth.respond("10.0.0.5:5000", Scope.repository("team/app"), header, None)


@pytest.mark.parametrize(
    ("named", "realm", "warning"),
    [
        ((), "https://auth.example/token", None),
        ((), "http://127.0.0.1:9000/token", None),
        (("10.0.0.5:5000",), "http://10.0.0.5:5000/token", "10.0.0.5:5000"),
        (("10.0.0.5:5000", "auth.internal"), "http://auth.internal/token", "auth.internal"),
        (
            ("10.0.0.5:5000", "auth.internal:8080"),
            "http://auth.internal:8080/t",
            "auth.internal:8080",
        ),
    ],
)
def test_realm_allowed(named: tuple[str, ...], realm: str, warning: str | None) -> None:
    warned: list[str] = []
    auth, server = _authenticator(InsecureRegistries.parse(named), warned)
    assert _respond(auth, realm) == "Bearer t0ken"
    assert len(server.asked) == 1
    assert server.asked[0].startswith(realm)
    assert warned == ([warning] if warning else [])


@pytest.mark.parametrize(
    ("named", "realm", "also"),
    [
        # the registry's being named does not extend to another host, or port, of its token server
        (("10.0.0.5:5000",), "http://auth.internal/token", True),
        (("10.0.0.5:5000",), "http://10.0.0.5:5001/token", True),
        (("10.0.0.5:5000", "auth.internal"), "http://auth.internal:8080/token", True),
        (("10.0.0.5:5000", "auth.internal:8080"), "http://auth.internal/token", True),
        # nothing named: plain http off loopback never
        ((), "http://10.0.0.5:5000/token", False),
    ],
)
def test_realm_refused(named: tuple[str, ...], realm: str, also: bool) -> None:
    warned: list[str] = []
    auth, server = _authenticator(InsecureRegistries.parse(named), warned)
    with pytest.raises(RegistryAuthError) as caught:
        _respond(auth, realm)
    assert caught.value.exit_code == EXIT_REGISTRY
    assert "over plain http" in str(caught.value)
    assert caught.value.hint is not None
    assert "--insecure-registry" in caught.value.hint
    assert ("does not cover its token server" in caught.value.hint) is also
    assert server.asked == []  # no credentials went anywhere
    assert warned == []


@pytest.mark.parametrize("realm", ["ftp://auth.example/token", "auth.example/token", ""])
def test_realm_without_https_scheme_refused(realm: str) -> None:
    auth, server = _authenticator(InsecureRegistries.parse(["auth.example"]), [])
    with pytest.raises(RegistryAuthError):
        _respond(auth, realm)
    assert server.asked == []


# --- the command line --------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["inspect", "10.0.0.5:5000/a:v1", *argv])


def _environ(tmp_path: Path, **extra: str) -> Mapping[str, str]:
    return {"DOCKER_CONFIG": str(tmp_path), **extra}


def test_cli_flag_and_environment_combine(tmp_path: Path) -> None:
    args = _args("--insecure-registry", "10.0.0.5:5000", "--insecure-registry", "c.example")
    environ = _environ(tmp_path, **{ENV_INSECURE_REGISTRIES: "b.example:1, 10.0.0.5:5000"})
    with registry_client(args, "10.0.0.5:5000", environ) as client:
        insecure = client.insecure_registries
    assert insecure.hosts == ("10.0.0.5:5000", "b.example:1", "c.example")
    assert insecure.source("10.0.0.5:5000") == "--insecure-registry"
    assert insecure.source("b.example:1") == ENV


def test_cli_nothing_named(tmp_path: Path) -> None:
    with registry_client(_args(), "10.0.0.5:5000", _environ(tmp_path)) as client:
        assert client.insecure_registries.hosts == ()
        assert client.transport.base(Reference.parse("10.0.0.5:5000/a")) == "https://10.0.0.5:5000"


def test_cli_bad_environment_is_a_usage_error(tmp_path: Path) -> None:
    environ = _environ(tmp_path, **{ENV_INSECURE_REGISTRIES: "10.0.0.5:5000/v2"})
    with pytest.raises(UsageError, match="has a path"):
        registry_client(_args(), "10.0.0.5:5000", environ)


@pytest.mark.parametrize("value", ["", "http://10.0.0.5:5000", "10.0.0.0/8", "10.0.0.5:99999"])
def test_cli_bad_flag_exits_2_with_a_hint(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["inspect", "10.0.0.5:5000/a:v1", "--insecure-registry", value])
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert "argument --insecure-registry: " in err
    assert "--insecure-registry: --insecure-registry" not in err
    if "99999" not in value:
        assert "hint: " in err


@pytest.mark.parametrize("command", ["sign", "verify", "pr-check", "inspect", "copy"])
def test_every_registry_command_has_the_flag(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--insecure-registry HOST[:PORT]" in out
    assert ENV_INSECURE_REGISTRIES in out


# serve and install containerd-verifier take verify's definition of the flag: checked as parsed.
SERVE = ["serve", "--listen", "127.0.0.1:0"]
INSTALL = ["install", "containerd-verifier"]


def _usage_message(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == EXIT_USAGE
    err = capsys.readouterr().err
    return err.split(": error: ", 1)[1].split("\nusage: ", 1)[0]


@pytest.mark.parametrize("value", ["http://10.0.0.5:5000", "10.0.0.0/8", "a b", ""])
@pytest.mark.parametrize("command", [SERVE, INSTALL], ids=["serve", "install"])
def test_serve_and_install_refuse_a_bad_host_as_verify_does(
    command: list[str], value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    message = _usage_message([*command, "--insecure-registry", value], capsys)
    assert message.startswith("argument --insecure-registry: "), message
    assert message == _usage_message(["verify", "r.io/a:v1", "--insecure-registry", value], capsys)


class _Built(Exception):
    """Raised by the fake engine: serve got as far as its settings."""


def test_serve_hands_the_named_registries_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []

    def engine(settings: Any) -> None:
        seen.append(settings)
        raise _Built

    monkeypatch.setattr("opk_sign.admission.engine.Engine", engine)
    argv = [*SERVE, "--insecure-registry", "10.0.0.5:5000", "--insecure-registry", "r.internal"]
    with pytest.raises(_Built):
        main(argv)
    assert seen[0].insecure_registries == ("10.0.0.5:5000", "r.internal")


def test_install_writes_the_named_registries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            *INSTALL,
            *("--bin-dir", str(tmp_path / "iv" / "bin"), "--trust-dir", str(tmp_path / "trust")),
            *("--cache-dir", str(tmp_path / "cache"), "--audit-log", str(tmp_path / "a.jsonl")),
            *("--insecure-registry", "10.0.0.5:5000"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    from opk_sign.admission.settings import parse_settings

    written = next((tmp_path / "iv").glob("*.toml"))
    assert parse_settings(written.read_bytes(), str(written)).insecure_registries == (
        "10.0.0.5:5000",
    )
