"""Worker processes for batches (issue 13), without a registry: how many, what travels to a worker
(options, TSA certificates, credentials, key sources), and what never needs one."""

from __future__ import annotations

import pickle
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from opk_sign.deadline import Deadline, DeadlineExceeded
from opk_sign.errors import (
    IssuerError,
    NetworkError,
    OpkSignError,
    RegistryAuthError,
    TrustError,
)
from opk_sign.http import HTTPConfig
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.credentials import Credential, ExplicitCredentials
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import JWKSCache
from opk_sign.pktoken import GITHUB_ISSUER, StaticJWKS
from opk_sign.policy import policy_from_fields
from opk_sign.trust.jwks_archive import KeySourceChain
from opk_sign.trust.timestamp import TSATrust
from opk_sign.urls import InsecureRegistries
from opk_sign.verify import workers
from opk_sign.verify.bundle import verify_signature_bundle
from opk_sign.verify.image import verify_images
from opk_sign.verify.options import VerifyOptions
from opk_sign.verify.outcome import Outcome
from tests.helpers import ASSETS, op_key

POLICY = policy_from_fields({"repository": "octo-org/octo-repo"})
KEYS = StaticJWKS(GITHUB_ISSUER, {"keys": [op_key().public_jwk()]})
VECTORS = ASSETS / "timestamps"


# --- how many -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "jobs", "images", "expected"),
    [
        (None, 16, workers.MIN_IMAGES - 1, 0),  # too few to pay
        (None, 16, workers.MIN_IMAGES, 4),  # one per CPU
        (None, 3, 1000, 3),  # never more than images at once
        (None, 1, 1000, 0),  # one at a time: nothing to share
        (0, 16, 1000, 0),
        (1, 16, 1000, 0),
        (2, 16, 5, 2),  # asked for: even for a small batch
        (8, 16, 5, 5),  # never more than images
        (8, 4, 1000, 4),
    ],
)
def test_worker_count(
    monkeypatch: pytest.MonkeyPatch, requested: int | None, jobs: int, images: int, expected: int
) -> None:
    monkeypatch.setattr(workers, "available_cpus", lambda: 4)
    assert workers.worker_count(requested, jobs=jobs, images=images) == expected


def test_one_cpu_means_no_workers_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "available_cpus", lambda: 1)
    assert workers.worker_count(None, jobs=16, images=10_000) == 0


def test_available_cpus_is_at_least_one() -> None:
    assert workers.available_cpus() >= 1


# --- what travels -------------------------------------------------------------------------------


def test_tsa_certificates_travel_as_der_and_still_verify() -> None:
    """Certificates do not pickle; the options of a verifier trusting a TSA must."""
    from opk_sign.bundle import Bundle

    trust = TSATrust.from_pem((VECTORS / "tsa-chain.pem").read_bytes())
    options = VerifyOptions(policy=POLICY, keys=KEYS, issuers=frozenset({GITHUB_ISSUER}), tsa=trust)
    with pytest.raises(TypeError):
        pickle.dumps(trust)
    copied: VerifyOptions = pickle.loads(workers.dumps(options))
    assert copied.tsa == trust and copied.policy == POLICY
    bundle = Bundle.from_json((VECTORS / "signature-inside.json").read_bytes())
    iat = bundle.pk_token.claims()["iat"]
    assert isinstance(iat, int)
    verified = verify_signature_bundle(
        bundle,
        digest="sha256:" + "ab" * 32,
        docker_reference="ghcr.io/octo-org/app",
        keys=KEYS,
        policy=POLICY,
        now=iat + 30 * 24 * 3600,  # long after the token's window: only the timestamp helps
        tsa=copied.tsa,
    )
    assert verified.timestamps


def test_the_run_pk_token_cache_travels_as_its_id() -> None:
    options = VerifyOptions(policy=POLICY, keys=KEYS, issuers=frozenset({GITHUB_ISSUER}))
    data = workers.dumps(options)
    assert options.pktoken_cache.uid.encode() in data
    assert pickle.loads(data).pktoken_cache is options.pktoken_cache  # here: the same one


class _Counting:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def credential_for(self, registry: str) -> Credential | None:
        self.asked.append(registry)
        return (
            Credential(username="u", password="p", source="test") if "private" in registry else None
        )


def test_client_settings_look_credentials_up_once_here() -> None:
    source = _Counting()
    insecure = InsecureRegistries.parse(["10.0.0.5:5000"])
    client = RegistryClient(Keychain([source]), insecure_registries=insecure)
    settings = workers.ClientSettings.of(client, {"private.example", "public.example"})
    assert settings is not None
    assert sorted(source.asked) == ["private.example", "public.example"]
    copied: workers.ClientSettings = pickle.loads(workers.dumps(settings))
    assert copied.insecure == insecure and copied.http == client.http
    with copied.build() as rebuilt:
        found = rebuilt.keychain.get("private.example")
        assert (found.username, found.password) == ("u", "p")
        assert rebuilt.keychain.get("public.example").anonymous
        rebuilt.keychain.get("other.example")  # not in the batch: asked in the worker
    assert sorted(source.asked) == ["private.example", "public.example"]  # the original, here


def test_explicit_credentials_and_the_docker_config_travel() -> None:
    explicit = ExplicitCredentials.for_registry("ghcr.io", username="me", token="t0k3n")
    client = RegistryClient(Keychain.default(explicit))
    settings = workers.ClientSettings.of(client, ["ghcr.io"])
    assert settings is not None
    with pickle.loads(workers.dumps(settings)).build() as rebuilt:
        assert rebuilt.keychain.get("ghcr.io").password == "t0k3n"


class _Refusing:
    def credential_for(self, registry: str) -> Credential | None:
        raise RegistryAuthError("the credential helper is not installed")


def test_a_failing_lookup_is_left_to_each_image() -> None:
    settings = workers.ClientSettings.of(RegistryClient(Keychain([_Refusing()])), ["ghcr.io"])
    assert settings is not None
    with pytest.raises(RegistryAuthError):
        settings.build().keychain.get("ghcr.io")


def test_a_client_a_worker_cannot_make_again_keeps_the_batch_here() -> None:
    class Custom(RegistryClient):
        pass

    class Unpicklable:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def credential_for(self, registry: str) -> Credential | None:
            return None

    assert workers.ClientSettings.of(Custom(Keychain.anonymous())) is None
    assert workers.ClientSettings.of(RegistryClient(Keychain([Unpicklable()]))) is None


def test_key_sources_as_a_worker_gets_them() -> None:
    class Locked:
        def __init__(self) -> None:
            self.lock = threading.Lock()

        def op_key(self, issuer: str, kid: str | None, issued_at: int) -> Mapping[str, Any]:
            return KEYS.op_key(issuer, kid, issued_at)

    live, locked = JWKSCache(), Locked()
    sources = workers._KeySources()
    assert sources.freeze(KEYS) is KEYS  # pickles as it is
    frozen = sources.freeze(KeySourceChain(live, KEYS, locked))
    assert isinstance(frozen, KeySourceChain)
    remote_live, static, remote_locked = frozen.sources
    assert (
        isinstance(remote_live, workers._RemoteJWKS) and sources.sources[remote_live.source] is live
    )
    assert static is KEYS
    assert isinstance(remote_locked, workers._RemoteKeys)
    assert sources.sources[remote_locked.source] is locked
    pickle.loads(workers.dumps(frozen))
    assert sources.serve(remote_locked.source, "op_key", (GITHUB_ISSUER, "test-key-1", 1)) == dict(
        op_key().public_jwk()
    )
    with pytest.raises(OpkSignError):
        sources.serve(remote_locked.source, "jwks", (GITHUB_ISSUER,))
    with pytest.raises(TrustError, match="outside a worker"):
        remote_live.op_key(GITHUB_ISSUER, None, 1)


def test_errors_come_back_as_their_class_or_the_nearest() -> None:
    rebuilt = workers._rebuild(IssuerError, "key 'k' is not in the JWKS", "rotate")
    assert type(rebuilt) is IssuerError and rebuilt.hint == "rotate"
    assert type(workers._rebuild(TrustError, "gone", None)) is TrustError
    # A deadline's error has another constructor: the nearest plain class, same exit code.
    late = workers._rebuild(DeadlineExceeded, "fetching took too long", None)
    assert type(late) is NetworkError and late.exit_code == 13
    assert DeadlineExceeded(Deadline.after(1, "x")).exit_code == 13


# --- what needs no worker -----------------------------------------------------------------------


def test_images_decided_without_a_registry_start_no_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: Any) -> Any:
        raise AssertionError("no worker may start for images decided here")

    monkeypatch.setattr(workers._Worker, "start", refuse)
    options = VerifyOptions(policy=POLICY, keys=KEYS, issuers=frozenset({GITHUB_ISSUER}))
    images = [f"not a reference {i}!" for i in range(40)]
    with RegistryClient(Keychain.anonymous()) as client:
        results = list(verify_images(images, options, client=client, workers=2))
    assert [r.image for r in results] == images
    assert {r.outcome for r in results} == {Outcome.USAGE_ERROR}


def test_workers_that_cannot_start_leave_the_batch_to_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No interpreter to start: a warning, and the images verified here (here: usage errors
    from a policy function, the same outcome either way)."""
    notices: list[str] = []
    monkeypatch.setattr("sys.executable", "/nonexistent/python")

    def no_policy(image: str) -> VerifyOptions:
        if image.endswith("3:v1"):
            from opk_sign.errors import UsageError

            raise UsageError(f"no policy applies to {image}")
        return VerifyOptions(policy=POLICY, keys=KEYS, issuers=frozenset({GITHUB_ISSUER}))

    images = [f"127.0.0.1:9/o/app{i}:v1" for i in range(6)]
    client = RegistryClient(Keychain.anonymous(), HTTPConfig(retries=0), notice=notices.append)
    with client:
        results = list(
            verify_images(images, no_policy, client=client, workers=2, jobs=4, image_timeout=5)
        )
    assert [r.image for r in results] == images
    assert results[3].outcome is Outcome.USAGE_ERROR
    assert {r.outcome for i, r in enumerate(results) if i != 3} == {Outcome.REGISTRY_ERROR}
    assert any("cannot start a worker process" in n for n in notices), notices


def test_the_cli_help_names_the_threshold() -> None:
    import argparse

    from opk_sign.cli.main import build_parser

    parser = build_parser()
    (verify,) = (
        action.choices["verify"]
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
    )
    assert f"{workers.MIN_IMAGES} distinct images" in " ".join(verify.format_help().split())


@pytest.mark.parametrize(
    ("processes", "jobs", "here", "started"),
    [
        (2, 16, 8, [8]),  # this process and one worker, 8 threads each
        (3, 16, 6, [5, 5]),
        (4, 6, 2, [2, 1, 1]),
        (5, 16, 0, [4, 3, 3, 3, 3]),  # more: this process only hands images out
    ],
)
def test_the_jobs_are_shared_out(processes: int, jobs: int, here: int, started: list[int]) -> None:
    settings = workers.ClientSettings.of(RegistryClient(Keychain.anonymous()))
    assert settings is not None
    batch = workers._Batch(
        [],
        lambda image: VerifyOptions(policy=POLICY, keys=KEYS, issuers=frozenset()),
        verify=lambda client, image, options: None,  # type: ignore[arg-type,return-value]
        settings=settings,
        client=RegistryClient(Keychain.anonymous()),
        workers=processes,
        jobs=jobs,
        per_image=10,
        run=None,
        notice=print,
        share_here=workers.SHARE_HERE and processes <= workers.SHARE_HERE_UP_TO,
    )
    assert (batch.here_threads, sorted(batch.threads, reverse=True)) == (here, started)
    assert list(batch) == []
