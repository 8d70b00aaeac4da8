"""``opk-sign serve`` (issue 15): the verification service for Kubernetes admission, run as a
process and asked with a real HTTP client (requests) what Kyverno's ``apiCall`` and Gatekeeper's
external data provider send: a ``ProviderRequest`` of image references.

Shown: a signed image is allowed, an unsigned one and one signed by another repository refused
with the reason in the item's ``error``; bodies over the limit are 413, bodies that are not a
request 400; more requests at once than the limit are 429 at once; every request ends within its
deadline; the cache makes a second request cost no registry request; /healthz and /metrics.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import SigningOptions, sign_image
from tests.services.faultproxy import Fault, FaultProxy, fault_proxy
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import olareg
from tests.services.tuf import StaticServer, cli, team_repository

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("admission-service")]

REPO = "octo-org/app"
API = "externaldata.gatekeeper.sh/v1beta1"


@dataclass(frozen=True)
class Images:
    registry: FaultProxy
    trust_dir: Path
    signed: str  # NAME@sha256:...
    signed_tag: str  # NAME:v1
    unsigned: str
    impostor: str
    unmapped: str
    issuer: str


def request_body(*keys: str) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "ProviderRequest", "request": {"keys": list(keys)}}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Images]:
    base = tmp_path_factory.mktemp("admission")
    trust_dir = base / "trust"
    saved = os.environ.get("OPK_SIGN_TRUST_DIR")
    os.environ["OPK_SIGN_TRUST_DIR"] = str(trust_dir)
    try:
        with (
            olareg(base / "olareg") as running,
            fault_proxy(running.host) as registry,
            GitHubOIDCEmulator(key=generated_op_key(0)) as emulator,
            StaticServer() as server,
            RegistryClient(Keychain.anonymous()) as client,
        ):
            provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
            options = SigningOptions(provenance=False)
            digests = {}
            for name in ("app", "unsigned", "impostor"):
                pushed = push_sample_image(
                    client, f"{running.host}/octo-org/{name}:v1", ("linux/amd64",), index=False
                )
                digests[name] = f"{registry.host}/octo-org/{name}@{pushed.digest}"
            other = push_sample_image(
                client, f"{running.host}/elsewhere/app:v1", ("linux/amd64",), index=False
            )
            emulator.set_claims(repository=REPO)
            sign_image(digests["app"], provider=provider, client=client, options=options)
            emulator.set_claims(repository="evil-org/app")
            sign_image(digests["impostor"], provider=provider, client=client, options=options)

            published = team_repository(
                base, issuer=emulator.issuer, repository=REPO, pattern=f"{registry.host}/octo-org/*"
            ).published
            server.serve(published)
            root = published / "metadata" / "1.root.json"
            assert cli("trust", "init", "--root", root, "--url", server.url) == 0
            yield Images(
                registry,
                trust_dir,
                digests["app"],
                f"{registry.host}/octo-org/app:v1",
                digests["unsigned"],
                digests["impostor"],
                f"{registry.host}/elsewhere/app@{other.digest}",
                emulator.issuer,
            )
    finally:
        if saved is None:
            os.environ.pop("OPK_SIGN_TRUST_DIR", None)
        else:
            os.environ["OPK_SIGN_TRUST_DIR"] = saved


@dataclass
class Service:
    url: str
    process: subprocess.Popen[str]
    session: requests.Session

    def ask(self, *keys: str, timeout: float = 30) -> requests.Response:
        return self.session.post(self.url + "/", json=request_body(*keys), timeout=timeout)

    def items(self, *keys: str) -> dict[str, dict[str, Any]]:
        answer = self.ask(*keys)
        assert answer.status_code == 200, answer.text
        document = answer.json()
        assert document["apiVersion"] == API and document["kind"] == "ProviderResponse"
        assert "systemError" not in document["response"]
        return {item["key"]: item for item in document["response"]["items"]}


@contextlib.contextmanager
def start(images: Images, tmp_path: Path, *extra: str) -> Iterator[Service]:
    env = dict(os.environ, OPK_SIGN_TRUST_DIR=str(images.trust_dir))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opk_sign.cli",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--audit-log",
            str(tmp_path / "audit.jsonl"),
            *extra,
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert process.stderr is not None
    line = process.stderr.readline()
    assert "listening on " in line, line
    url = line.split("listening on ", 1)[1].strip()
    # Drain stderr (notices) so the service never blocks on a full pipe.
    threading.Thread(target=process.stderr.read, daemon=True).start()
    with requests.Session() as session:
        session.trust_env = False
        try:
            yield Service(url, process, session)
        finally:
            process.terminate()
            process.wait(timeout=10)


@pytest.fixture
def service(images: Images, tmp_path: Path) -> Iterator[Service]:
    settings = tmp_path / "settings.toml"
    settings.write_text(f'issuer = "{images.issuer}"\n')
    with start(images, tmp_path, "--config", str(settings), "--max-body", "4096") as running:
        yield running


def test_signed_unsigned_and_other_signer(service: Service, images: Images) -> None:
    items = service.items(images.signed, images.unsigned, images.impostor, images.unmapped)
    signed = items[images.signed]
    assert "error" not in signed
    assert signed["value"]["allowed"] is True and signed["value"]["outcome"] == "verified"
    assert signed["value"]["identity"]["repository"] == REPO
    unsigned = items[images.unsigned]
    assert unsigned["value"]["allowed"] is False
    assert "no opk-sign signatures" in unsigned["error"]
    assert "`opk-sign verify` exits 10" in unsigned["error"]
    impostor = items[images.impostor]
    assert "evil-org/app" in impostor["error"] and "exits 11" in impostor["error"]
    assert items[images.unmapped]["value"]["outcome"] == "unmapped"
    assert "error" not in items[images.unmapped]  # unmapped: allow (the default)
    # A tag is resolved to its digest and decided like it.
    tagged = service.items(images.signed_tag)[images.signed_tag]
    assert tagged["value"]["allowed"] is True
    assert tagged["value"]["digest"] == images.signed.split("@")[1]


def test_second_request_is_answered_from_the_cache(service: Service, images: Images) -> None:
    assert service.items(images.signed)[images.signed]["value"]["allowed"] is True
    images.registry.reset_counts()
    again = service.items(images.signed)[images.signed]
    assert again["value"]["allowed"] is True
    assert images.registry.count() == 0, images.registry.describe()


def test_oversize_body_is_413_and_bad_json_400(service: Service) -> None:
    big = json.dumps(request_body(*(f"127.0.0.1:1/x/y{i}:v1" for i in range(400)))).encode()
    assert len(big) > 4096
    answer = service.session.post(
        service.url, data=big, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert answer.status_code == 413
    assert "at most 4096" in answer.json()["response"]["systemError"]
    for body in (b"{not json", b"[]", json.dumps({"kind": "ProviderRequest"}).encode()):
        answer = service.session.post(service.url, data=body, timeout=10)
        assert answer.status_code == 400, body
        assert answer.json()["kind"] == "ProviderResponse"
        assert answer.json()["response"]["systemError"]
    wrong = dict(request_body("a/b:c"), apiVersion="v0")
    assert service.session.post(service.url, json=wrong, timeout=10).status_code == 400


def test_health_and_metrics(service: Service, images: Images) -> None:
    health = service.session.get(service.url + "/healthz", timeout=10)
    assert health.status_code == 200 and health.text == "ok\n"
    service.items(images.unsigned)
    metrics = service.session.get(service.url + "/metrics", timeout=10)
    assert metrics.status_code == 200
    assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = metrics.text
    assert 'opk_sign_http_requests_total{code="200"} 1' in text
    assert 'opk_sign_decisions_total{decision="refuse",outcome="no-signatures"} 1' in text
    assert "opk_sign_request_seconds_count 1" in text


def test_concurrency_limit_and_request_deadline(images: Images, tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text(f'issuer = "{images.issuer}"\n')
    # The registry answers manifests after 3 s; one request at a time; 1.5 s per request.
    fault = images.registry.add(Fault("delay_request", path="/manifests/", delay=3.0, times=-1))
    try:
        with start(
            images,
            tmp_path,
            "--config",
            str(settings),
            "--max-concurrency",
            "1",
            "--request-timeout",
            "1.5",
        ) as service:
            slow: dict[str, Any] = {}

            def ask_slowly() -> None:
                started = time.monotonic()
                slow["answer"] = service.ask(images.unsigned)
                slow["seconds"] = time.monotonic() - started

            first = threading.Thread(target=ask_slowly)
            first.start()
            time.sleep(0.5)  # the first request holds the only slot
            second = service.ask(images.signed)
            assert second.status_code == 429
            assert second.headers["Retry-After"] == "1"
            assert "more than 1 requests at once" in second.json()["response"]["systemError"]
            first.join()
            # The deadline ended the slow request on time, refusing the image it could not
            # decide (never allowing it).
            assert slow["seconds"] < 3.0
            answer = slow["answer"]
            assert answer.status_code == 200
            item = answer.json()["response"]["items"][0]
            assert item["value"]["allowed"] is False
            assert "within 1.5 s" in item["error"]
    finally:
        images.registry.clear_faults()
        del fault


def test_tls(images: Images, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "opk-sign serve test")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert, private = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with start(images, tmp_path, "--tls-cert", str(cert), "--tls-key", str(private)) as service:
        assert service.url.startswith("https://")
        health = service.session.get(service.url + "/healthz", verify=str(cert), timeout=10)
        assert health.status_code == 200
        answer = service.session.post(
            service.url, json=request_body(images.unmapped), verify=str(cert), timeout=30
        )
        assert answer.status_code == 200
