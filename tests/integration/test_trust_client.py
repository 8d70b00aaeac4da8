"""The TUF client against a repository built by the maintainer commands and served over HTTP on
loopback: trust material through the mapping, python-tuf's refusals (rollback, freeze,
mix-and-match) as exit code 14, offline mode, and key rotation verified through the archive."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from tuf.api import _payload as tuf_payload
from tuf.api.metadata import Metadata, MetaFile  # type: ignore[attr-defined]
from tuf.ngclient._internal import trusted_metadata_set

from opk_sign import __version__
from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.errors import (
    EXIT_INVALID_SIGNATURE,
    EXIT_TRUST,
    IssuerError,
    TrustError,
    VerificationError,
)
from opk_sign.http import new_session
from opk_sign.oidc import fetch_jwks
from opk_sign.payloads.simplesigning import SimpleSigningPayload
from opk_sign.pktoken import GITHUB_ISSUER, StaticJWKS, new_osm
from opk_sign.trust.client import TRUST_DIR_ENV, TrustClient, TrustConfig
from opk_sign.trust.jwks_archive import JWKSArchive, KeySourceChain
from opk_sign.trust.repository import load_signers
from opk_sign.verify import verify_signature_bundle
from tests.helpers import mint, op_key
from tests.services.oidc import generated_op_key
from tests.services.tuf import ARCHIVED_AT, POLICY, Maintained, StaticServer, build_repository, cli

pytestmark = pytest.mark.integration

OFFICIAL = "policies/official-images.json"


@pytest.fixture(scope="module")
def server() -> Iterator[StaticServer]:
    with StaticServer() as running:
        yield running


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Maintained:
    return build_repository(tmp_path_factory.mktemp("tuf"))


@pytest.fixture
def maintained(shared: Maintained, tmp_path: Path) -> Maintained:
    """A private copy of the shared repository, for tests that change it."""
    return shared.copy(tmp_path / "copy")


@pytest.fixture
def trust_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh trust directory, also the CLI's (``OPK_SIGN_TRUST_DIR``)."""
    directory = tmp_path / "trust"
    monkeypatch.setenv(TRUST_DIR_ENV, str(directory))
    return directory


def cli_status(maintained: Maintained, url: str, tmp_path: Path, *extra: str) -> int:
    """``opk-sign trust init`` (no refresh) with the repository's root, then ``trust status``."""
    root = tmp_path / "root.json"
    root.write_bytes(maintained.root)
    assert cli("trust", "init", "--root", root, "--url", url, "--no-refresh") == 0
    return cli("trust", "status", *extra)


def refused(client: TrustClient, match: str) -> TrustError:
    with pytest.raises(TrustError, match=match) as caught:
        client.mapping()
    assert caught.value.exit_code == EXIT_TRUST
    assert caught.value.hint
    return caught.value


# --- trust material through the mapping


def test_mapping_policies_archive_and_tsa_certs(
    shared: Maintained, server: StaticServer, trust_dir: Path
) -> None:
    server.serve(shared.published)
    client = shared.client(server.url, trust_dir)
    mapping = client.mapping()
    rule = mapping.lookup("mirror.gcr.io/library/alpine:3.20")
    assert rule is not None
    assert (rule.policy, rule.name, rule.rewritten) == (OFFICIAL, "docker.io/library/alpine", True)
    assert mapping.lookup("quay.io/someone/app") is None
    assert client.policy_document(rule.policy) == POLICY
    assert "repository == 'docker-library/official-images'" in client.policy(rule.policy).describe()
    archive = client.jwks_archive(GITHUB_ISSUER)
    assert archive is not None
    assert archive.op_key(GITHUB_ISSUER, op_key().kid, ARCHIVED_AT) == op_key().public_jwk()
    assert client.jwks_archive("https://token.example.com") is None
    assert client.tsa_certs() == shared.repository().target_bytes("tsa/certs.pem")
    assert client.notice is None


def test_one_refresh_per_run(shared: Maintained, server: StaticServer, trust_dir: Path) -> None:
    server.serve(shared.published)
    server.requests.clear()
    client = shared.client(server.url, trust_dir)
    client.mapping()
    client.policy_document(OFFICIAL)
    client.jwks_archive(GITHUB_ISSUER)
    client.tsa_certs()
    client.status()
    first_run = list(server.requests)
    assert first_run.count("/metadata/timestamp.json") == 1
    assert len(first_run) == 4 + 5  # next root?, timestamp, snapshot, targets; five targets
    # The next run finds everything in its cache: it asks only whether anything changed.
    server.requests.clear()
    shared.client(server.url, trust_dir).status()
    assert server.requests == ["/metadata/2.root.json", "/metadata/timestamp.json"]


def test_changes_reach_the_client(
    maintained: Maintained, server: StaticServer, trust_dir: Path, tmp_path: Path
) -> None:
    server.serve(maintained.published)
    assert maintained.client(server.url, trust_dir).mapping().lookup("ghcr.io/x/y") is None
    argv = ["trust", "repo", "map", maintained.dir, "ghcr.io/**", "team"]
    assert cli(*argv, "--keys-dir", maintained.keys) == 0
    maintained.publish(maintained.published)
    rule = maintained.client(server.url, trust_dir).mapping().lookup("ghcr.io/x/y")
    assert rule is not None and rule.policy == "policies/team.json"


def test_root_rotation_is_followed(
    maintained: Maintained, server: StaticServer, trust_dir: Path
) -> None:
    argv = ["trust", "repo", "resign", maintained.dir, "--role", "root"]
    assert cli(*argv, "--keys-dir", maintained.keys) == 0
    maintained.publish(maintained.published)
    server.serve(maintained.published)
    roles = {r.name: r.version for r in maintained.client(server.url, trust_dir).status().roles}
    assert roles["root"] == 2  # bootstrapped from 1.root.json


def test_trust_init_and_status_through_the_cli(
    shared: Maintained,
    server: StaticServer,
    trust_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.serve(shared.published)
    root = tmp_path / "root.json"
    root.write_bytes(shared.root)
    assert cli("trust", "init", "--root", root, "--url", server.url) == 0
    assert (trust_dir / "config.json").is_file()
    capsys.readouterr()
    assert cli("trust", "status") == 0
    out = capsys.readouterr().out
    assert "mode: online" in out
    assert "docker.io/library/* -> policies/official-images.json" in out
    assert "rewrite mirror.gcr.io/library/* => docker.io/library/*" in out
    assert cli("trust", "status", "--output", "json") == 0
    status = json.loads(capsys.readouterr().out)
    assert [r["role"] for r in status["roles"]] == ["root", "targets", "snapshot", "timestamp"]
    assert status["mapping"]["rules"][0]["policy"] == OFFICIAL


def test_trust_init_refuses_what_does_not_verify(
    shared: Maintained,
    server: StaticServer,
    trust_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server.serve(shared.published)
    not_root = tmp_path / "targets.json"
    not_root.write_bytes((shared.published / "metadata" / "1.targets.json").read_bytes())
    assert cli("trust", "init", "--root", not_root, "--url", server.url) == EXIT_TRUST
    assert "not root" in capsys.readouterr().err
    other = build_repository(tmp_path / "other")  # a root that did not sign this repository
    other_root = tmp_path / "other-root.json"
    other_root.write_bytes(other.root)
    assert cli("trust", "init", "--root", other_root, "--url", server.url) == EXIT_TRUST
    assert "python-tuf refused" in capsys.readouterr().err
    assert not (trust_dir / "config.json").exists()
    assert cli("trust", "status") == EXIT_TRUST
    assert "opk-sign trust init" in capsys.readouterr().err


def test_minimum_verifier_version(
    maintained: Maintained, server: StaticServer, trust_dir: Path, tmp_path: Path
) -> None:
    argv = ["trust", "repo", "set-min-version", maintained.dir, "99.0.0"]
    assert cli(*argv, "--keys-dir", maintained.keys) == 0
    maintained.publish(maintained.published)
    server.serve(maintained.published)
    error = refused(maintained.client(server.url, trust_dir), "requires opk-sign 99.0.0")
    assert __version__ in error.message
    assert cli_status(maintained, server.url, tmp_path) == EXIT_TRUST


# --- what python-tuf refuses, as exit code 14


def test_rollback_to_an_older_timestamp_is_refused(
    maintained: Maintained, server: StaticServer, trust_dir: Path, tmp_path: Path
) -> None:
    older = maintained.published  # timestamp version 7
    assert cli("trust", "repo", "resign", maintained.dir, "--keys-dir", maintained.keys) == 0
    newer = maintained.publish(tmp_path / "newer")  # timestamp version 8
    server.serve(newer)
    maintained.client(server.url, trust_dir).mapping()
    server.serve(older)  # a mirror or attacker replays the older, still unexpired state
    error = refused(maintained.client(server.url, trust_dir), "rollback")
    assert "timestamp version 7 must be >= 8" in error.message
    assert cli_status(maintained, server.url, tmp_path) == EXIT_TRUST


def test_rollback_of_snapshot_under_a_signed_timestamp_is_refused(
    maintained: Maintained, server: StaticServer, trust_dir: Path, tmp_path: Path
) -> None:
    server.serve(maintained.published)
    maintained.client(server.url, trust_dir).mapping()  # has seen snapshot version 7
    # Even the holder of the timestamp key cannot point clients back at an older snapshot.
    metadata = maintained.published / "metadata"
    timestamp = Metadata[Any].from_bytes((metadata / "timestamp.json").read_bytes())
    timestamp.signed.version += 1
    old_snapshot = (metadata / "6.snapshot.json").read_bytes()
    timestamp.signed.snapshot_meta = MetaFile.from_data(6, old_snapshot, ["sha256"])
    (signer,) = (
        s
        for keyid, s in load_signers(maintained.keys).items()
        if keyid
        in json.loads((metadata / "1.root.json").read_bytes())["signed"]["roles"]["timestamp"][
            "keyids"
        ]
    )
    timestamp.sign(signer)
    (metadata / "timestamp.json").write_bytes(timestamp.to_bytes())
    refused(maintained.client(server.url, trust_dir), "rollback")
    assert cli_status(maintained, server.url, tmp_path) == EXIT_TRUST


def test_freeze_on_an_expired_timestamp_is_refused(
    maintained: Maintained, server: StaticServer, trust_dir: Path, tmp_path: Path
) -> None:
    # A timestamp signed ten days ago (valid three days): what a frozen mirror keeps serving.
    ten_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    maintained.repository(clock=lambda: ten_days_ago).resign(["timestamp"])
    frozen = tmp_path / "frozen"
    maintained.repository(clock=lambda: ten_days_ago).publish(frozen)
    server.serve(frozen)
    error = refused(maintained.client(server.url, trust_dir), "expired")
    assert "timestamp.json is expired" in error.message
    assert cli_status(maintained, server.url, tmp_path) == EXIT_TRUST


@pytest.mark.parametrize(
    ("file", "replacement"),
    [
        # targets metadata of another repository state than the snapshot names
        ("metadata/7.targets.json", "metadata/5.targets.json"),
        # snapshot metadata of another state than the timestamp names
        ("metadata/7.snapshot.json", "metadata/6.snapshot.json"),
        # a target file other than the one targets metadata signed
        ("policies", "policies/team.json"),
    ],
    ids=["targets-vs-snapshot", "snapshot-vs-timestamp", "target-file"],
)
def test_mix_and_match_is_refused(
    shared: Maintained,
    server: StaticServer,
    trust_dir: Path,
    tmp_path: Path,
    file: str,
    replacement: str,
) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(shared.published, mixed)
    if file == "policies":
        official = next((mixed / "targets" / "policies").glob("*.official-images.json"))
        team = next((mixed / "targets" / "policies").glob("*.team.json"))
        official.write_bytes(team.read_bytes())
    else:
        (mixed / file).write_bytes((mixed / replacement).read_bytes())
    server.serve(mixed)
    error = refused(shared.client(server.url, trust_dir), "length or hash|longer than")
    assert "mix-and-match" in (error.hint or "")
    assert cli_status(shared, server.url, tmp_path) == EXIT_TRUST


def test_unreachable_repository(shared: Maintained, trust_dir: Path) -> None:
    session = new_session()
    session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
    config = TrustConfig.for_url("http://127.0.0.1:9", shared.root)
    with session:
        client = TrustClient(config, trust_dir=trust_dir, session=session)
        error = refused(client, "could not fetch")
        # One refresh per run: the failure is remembered, not retried.
        with pytest.raises(TrustError, match="could not fetch"):
            client.policy_document(OFFICIAL)
    assert "offline" in (error.hint or "")


# --- offline mode


def test_offline_after_one_online_refresh(
    shared: Maintained,
    trust_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with StaticServer() as own:
        own.serve(shared.published)
        url = own.url
        shared.client(url, trust_dir).mapping()
    # The server is gone; offline mode still has everything, and says it is offline.
    client = shared.client(url, trust_dir, offline=True)
    assert client.mapping().lookup("alpine") is not None
    assert client.policy_document(OFFICIAL) == POLICY
    assert client.jwks_archive(GITHUB_ISSUER) is not None
    assert client.tsa_certs() is not None
    assert client.notice is not None and client.notice.startswith("offline")
    assert cli_status(shared, url, tmp_path, "--offline") == 0
    captured = capsys.readouterr()
    assert "warning: offline" in captured.err
    assert "mode: offline" in captured.out


def test_offline_without_a_cache(shared: Maintained, trust_dir: Path) -> None:
    client = shared.client("http://127.0.0.1:9", trust_dir, offline=True)
    error = refused(client, "offline")
    assert "run once online" in (error.hint or "")


def test_offline_refuses_an_expired_cache(
    shared: Maintained, server: StaticServer, trust_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.serve(shared.published)
    shared.client(server.url, trust_dir).mapping()

    class Later(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Later:
            return cls.fromtimestamp(dt.datetime.now(tz).timestamp() + 10 * 86400, tz)

    # python-tuf's clock, ten days on: the cached timestamp (valid three days) has expired.
    clock = types.SimpleNamespace(datetime=Later, timezone=dt.timezone)
    monkeypatch.setattr(trusted_metadata_set, "datetime", clock)
    monkeypatch.setattr(tuf_payload, "datetime", Later)
    refused(shared.client(server.url, trust_dir, offline=True), "timestamp.json is expired")


def test_another_root_for_the_same_url_starts_a_new_cache(
    shared: Maintained, server: StaticServer, trust_dir: Path, tmp_path: Path
) -> None:
    server.serve(shared.published)
    shared.client(server.url, trust_dir).mapping()
    other = build_repository(tmp_path / "other")
    server.serve(other.published)
    # Versions restart at 1 in the other repository: with its own root this is no rollback.
    assert other.client(server.url, trust_dir).mapping().lookup("alpine") is not None


# --- key rotation (issue 6, item 2)


IMAGE = "registry.example/octo-org/app"
DIGEST = "sha256:" + "ab" * 32


def test_key_rotation_verifies_through_the_archive(
    maintained: Maintained, server: StaticServer, trust_dir: Path, tmp_path: Path
) -> None:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as emulator:
        issuer, k1 = emulator.issuer, generated_op_key(0)
        # The registry operator's daily job snapshots the issuer's JWKS into the repository.
        policy = tmp_path / "emulated.json"
        policy.write_text(json.dumps({"issuer": issuer, "repository": "octo-org/octo-repo"}))
        keys = ["--keys-dir", maintained.keys]
        for step in (
            ["set-policy", maintained.dir, "emulated", policy],
            ["map", maintained.dir, IMAGE, "emulated"],
            ["add-jwks", maintained.dir, "--issuer", issuer, "--fetch"],
        ):
            assert cli("trust", "repo", *step, *keys) == 0
        maintained.publish(maintained.published)
        server.serve(maintained.published)

        # Signed with K1, as a signing job does.
        minted = mint(op=k1, issuer=issuer)
        payload = SimpleSigningPayload.build(IMAGE, DIGEST, {})
        bundle_osm = new_osm(minted.pkt, minted.user_key, payload.raw)

        # GitHub rotates to K2 and drops K1 from its JWKS.
        emulator.rotate(drop_old=True, new_key=generated_op_key(1))
        live = StaticJWKS(issuer, fetch_jwks(issuer))
        assert [k["kid"] for k in live.jwks["keys"]] == [generated_op_key(1).kid]

    from opk_sign.bundle import Bundle

    bundle = Bundle(minted.pkt, osm=bundle_osm)
    client = maintained.client(server.url, trust_dir)
    rule = client.mapping().lookup(IMAGE)
    assert rule is not None
    policy_for_image = client.policy(rule.policy)

    def verify(keys: object) -> None:
        verify_signature_bundle(
            bundle,
            digest=DIGEST,
            docker_reference=rule.name,
            keys=keys,  # type: ignore[arg-type]
            policy=policy_for_image,
            issuers={issuer},
        )

    # The live JWKS alone no longer holds K1: the error select_key raises (exit 12).
    with pytest.raises(IssuerError, match="not in the JWKS") as live_only:
        verify(live)
    assert live_only.value.exit_code == EXIT_INVALID_SIGNATURE

    # The archive distributed through TUF holds K1, seen while the token was issued.
    archive = client.jwks_archive(issuer)
    assert archive is not None and archive.key(k1.kid) is not None
    verify(KeySourceChain(live, archive))

    # An archive that never saw K1 (begun after the rotation, e.g. a --jwks-archive FILE):
    # an invalid signature (12), not a trust error (14).
    lacking_file = tmp_path / "archive.json"
    lacking_file.write_bytes(JWKSArchive(issuer).observe(live.jwks, ARCHIVED_AT).to_json())
    lacking = JWKSArchive.from_json(lacking_file.read_bytes())
    with pytest.raises(VerificationError) as caught:
        verify(KeySourceChain(live, lacking))
    assert not isinstance(caught.value, TrustError)
    assert caught.value.exit_code == EXIT_INVALID_SIGNATURE
    assert "not in the JWKS archive" in caught.value.message


def test_a_policy_from_tuf_that_names_no_signer_is_exit_14(
    maintained: Maintained, server: StaticServer, trust_dir: Path
) -> None:
    # `set-policy` refuses such a policy; one published anyway (an older tool, a mistake, a
    # compromised targets key) is trust-material error 14 at the verifier, never a pass.
    open_policy = json.dumps({"ref": "refs/heads/main", "event": "push"}).encode()
    maintained.repository()._change_targets({"policies/team.json": open_policy})
    maintained.publish(maintained.published)
    server.serve(maintained.published)
    client = maintained.client(server.url, trust_dir)
    with pytest.raises(TrustError) as caught:
        client.policy("policies/team.json")
    assert caught.value.exit_code == EXIT_TRUST
    assert "names no signer" in caught.value.message
