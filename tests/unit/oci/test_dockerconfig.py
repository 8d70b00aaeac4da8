"""Docker config parsing, credential helpers (a real helper program), and the keychain order."""

from __future__ import annotations

import base64
import json
import stat
import sys
from pathlib import Path

import pytest

from opk_sign.errors import RegistryAuthError, UsageError
from opk_sign.oci.credentials import ExplicitCredentials, registry_key
from opk_sign.oci.dockerconfig import DOCKER_HUB_SERVER, DockerConfig, config_dir
from opk_sign.oci.keychain import Keychain


def encoded(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_registry_keys() -> None:
    assert registry_key("https://index.docker.io/v1/") == "docker.io"
    assert registry_key("registry-1.docker.io") == "docker.io"
    assert registry_key("http://Registry.Example.com:5000/v2/") == "registry.example.com:5000"
    assert registry_key("ghcr.io") == "ghcr.io"


def test_auths_entries() -> None:
    config = DockerConfig.parse(
        json.dumps(
            {
                "auths": {
                    DOCKER_HUB_SERVER: {"auth": encoded("hub", "pw:with:colons")},
                    "https://ghcr.io": {"username": "u", "password": "p"},
                    "quay.io": {"identitytoken": "refresh"},
                    "gcr.io": {"registrytoken": "bearer"},
                    "empty.example": {},
                }
            }
        ).encode()
    )
    hub = config.credential_for("docker.io")
    assert hub is not None
    assert (hub.username, hub.password) == ("hub", "pw:with:colons")
    ghcr = config.credential_for("ghcr.io")
    assert ghcr is not None
    assert (ghcr.username, ghcr.password) == ("u", "p")
    quay = config.credential_for("quay.io")
    assert quay is not None
    assert quay.identity_token == "refresh"
    gcr = config.credential_for("gcr.io")
    assert gcr is not None
    assert gcr.registry_token == "bearer"
    assert config.credential_for("empty.example") is None
    assert config.credential_for("unknown.example") is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (b'{"auths": []}', "auths must be an object"),
        (b'{"auths": {"x": "y"}}', "must be an object"),
        (b'{"auths": {"x": {"auth": "%%%"}}}', "not base64"),
        (b'{"auths": {"x": {"auth": "bm9jb2xvbg=="}}}', "user:password"),
        (b'{"credHelpers": {"x": 1}}', "must be a string"),
    ],
)
def test_malformed_configs_are_refused(document: bytes, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        DockerConfig.parse(document, path=Path("/home/u/.docker/config.json"))


def test_config_location(tmp_path: Path) -> None:
    assert config_dir({"DOCKER_CONFIG": "/x"}) == Path("/x")
    assert config_dir({"HOME": "/home/u"}) == Path("/home/u/.docker")
    assert DockerConfig.load(tmp_path, environ={}).auths == {}  # no file: empty config
    document = {"auths": {"r.example": {"auth": encoded("a", "b")}}}
    (tmp_path / "config.json").write_text(json.dumps(document))
    loaded = DockerConfig.load(environ={"DOCKER_CONFIG": str(tmp_path)})
    assert loaded.credential_for("r.example") is not None


def helper(directory: Path, body: str) -> str:
    program = directory / "docker-credential-unit"
    program.write_text(f"#!{sys.executable}\nimport json, sys\nserver = sys.stdin.read()\n{body}")
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    return str(directory)


def test_helper_protocol(tmp_path: Path) -> None:
    path = helper(
        tmp_path,
        "if server == 'r.example':\n"
        "    print(json.dumps({'ServerURL': server, 'Username': 'u', 'Secret': 's'}))\n"
        f"elif server == {DOCKER_HUB_SERVER!r}:\n"
        "    print(json.dumps({'ServerURL': server, 'Username': '<token>', 'Secret': 'rt'}))\n"
        "elif server == 'broken.example':\n"
        "    print('boom', file=sys.stderr); sys.exit(3)\n"
        "else:\n"
        "    print('credentials not found in native keychain'); sys.exit(1)\n",
    )
    document = {
        "credsStore": "unit",
        "auths": {"other.example": {"auth": encoded("a", "b")}},
    }
    config = DockerConfig.parse(json.dumps(document).encode(), helper_path=path)
    found = config.credential_for("r.example")
    assert found is not None
    assert (found.username, found.password) == ("u", "s")
    assert "docker-credential-unit" in found.source
    hub = config.credential_for("index.docker.io")
    assert hub is not None
    assert hub.identity_token == "rt"
    other = config.credential_for("other.example")  # helper has none: the auths entry
    assert other is not None
    assert other.username == "a"
    assert config.credential_for("nothing.example") is None
    with pytest.raises(RegistryAuthError, match="boom"):
        config.credential_for("broken.example")


def test_cred_helpers_win_over_creds_store(tmp_path: Path) -> None:
    path = helper(tmp_path, "print(json.dumps({'Username': 'from-helper', 'Secret': 's'}))\n")
    document = {"credsStore": "missing", "credHelpers": {"r.example": "unit"}}
    config = DockerConfig.parse(json.dumps(document).encode(), helper_path=path)
    found = config.credential_for("r.example")
    assert found is not None
    assert found.username == "from-helper"
    with pytest.raises(RegistryAuthError, match="docker-credential-missing"):
        config.credential_for("elsewhere.example")


def test_keychain_order_and_cache(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    path = helper(
        tmp_path,
        f"open({str(calls)!r}, 'a').write(server + '\\n')\n"
        "print(json.dumps({'Username': 'helper', 'Secret': 's'}))\n",
    )
    config = DockerConfig.parse(b'{"credsStore": "unit"}', helper_path=path)
    explicit = ExplicitCredentials.for_registry("ghcr.io", token="ghs_token")
    keychain = Keychain.default(explicit, docker_config=config)
    ghcr = keychain.get("https://ghcr.io")
    assert (ghcr.username, ghcr.password) == ("opk-sign", "ghs_token")
    for _ in range(3):
        assert keychain.get("r.example").username == "helper"
    assert calls.read_text().splitlines() == ["r.example"]  # asked once per run
    assert Keychain.anonymous().get("r.example").anonymous
    assert ExplicitCredentials.for_registry("x", username="u").credential_for("x") is None
