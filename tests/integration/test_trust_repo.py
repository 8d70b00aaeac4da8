"""The maintainer commands (`opk-sign trust repo …`): a TUF repository built and published with
python-tuf's Metadata API, keys kept private, every change complete or not at all."""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tuf.api.metadata import Metadata

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.errors import EXIT_FAILURE, EXIT_TRUST, EXIT_USAGE
from opk_sign.trust import repository as repository_module
from opk_sign.trust.client import jwks_target, write_atomic
from opk_sign.trust.mapping import Mapping
from opk_sign.trust.repository import TrustRepository
from tests.services.oidc import generated_op_key
from tests.services.tuf import POLICY, Maintained, StaticServer, build_repository, cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Maintained:
    return build_repository(tmp_path_factory.mktemp("tuf"))


@pytest.fixture
def maintained(shared: Maintained, tmp_path: Path) -> Maintained:
    """A private copy of the repository built by the maintainer commands."""
    return shared.copy(tmp_path / "copy")


def tree(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


def signed(path: Path) -> object:
    return Metadata.from_bytes(path.read_bytes()).signed


# --- init


def test_init_creates_the_four_roles_and_private_keys(tmp_path: Path) -> None:
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    assert cli("trust", "repo", "init", repo, "--keys-dir", keys) == 0
    names = sorted(p.name for p in (repo / "metadata").iterdir())
    assert names == ["1.root.json", "1.snapshot.json", "1.targets.json", "timestamp.json"]
    root = Metadata.from_bytes((repo / "metadata" / "1.root.json").read_bytes()).signed
    assert root.consistent_snapshot is True
    assert {role: r.threshold for role, r in root.roles.items()} == dict.fromkeys(
        ("root", "targets", "snapshot", "timestamp"), 1
    )
    pems = sorted(keys.glob("*.pem"))
    assert sorted(p.name.split("-")[0] for p in pems) == [
        "root",
        "snapshot",
        "targets",
        "timestamp",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in pems)
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    # The repository starts with an empty mapping: clients always find one.
    assert TrustRepository(repo).mapping() == Mapping()


def test_threshold_signing_needs_enough_keys(tmp_path: Path) -> None:
    repo, keys, policy = tmp_path / "repo", tmp_path / "keys", tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    argv = ["trust", "repo", "init", repo, "--keys-dir", keys, "--threshold", "2", "--keys", "3"]
    assert cli(*argv) == 0
    root = Metadata.from_bytes((repo / "metadata" / "1.root.json").read_bytes()).signed
    assert (len(root.roles["targets"].keyids), root.roles["targets"].threshold) == (3, 2)
    assert (len(root.roles["timestamp"].keyids), root.roles["timestamp"].threshold) == (1, 1)
    targets_keys = sorted(keys.glob("targets-*.pem"))
    targets_keys[0].unlink()  # 2 of 3 is enough
    assert cli("trust", "repo", "set-policy", repo, "p", policy, "--keys-dir", keys) == 0
    targets_keys[1].unlink()  # 1 of 3 is not
    before = tree(repo)
    assert cli("trust", "repo", "set-policy", repo, "q", policy, "--keys-dir", keys) == EXIT_USAGE
    assert tree(repo) == before


@pytest.mark.parametrize(
    "extra", [["--threshold", "0"], ["--threshold", "3", "--keys", "2"], ["--expires", "x=1d"]]
)
def test_bad_init_options(tmp_path: Path, extra: list[str]) -> None:
    argv = ["trust", "repo", "init", tmp_path / "repo", "--keys-dir", tmp_path / "keys", *extra]
    assert cli(*argv) == EXIT_USAGE
    assert not (tmp_path / "repo" / "metadata").exists()


def test_init_refuses_a_used_directory_or_keys_dir(
    maintained: Maintained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("trust", "repo", "init", maintained.dir, "--keys-dir", tmp_path / "k") == EXIT_USAGE
    assert "not empty" in capsys.readouterr().err
    assert cli("trust", "repo", "init", tmp_path / "r", "--keys-dir", maintained.keys) == EXIT_USAGE
    assert "already holds keys" in capsys.readouterr().err


def test_a_failed_init_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(self: TrustRepository, *, snapshot: bool = True) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TrustRepository, "_commit", disk_full)
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    assert cli("trust", "repo", "init", repo, "--keys-dir", keys) == EXIT_FAILURE
    assert not repo.exists()
    assert list(keys.glob("*.pem")) == []
    assert [p.name for p in tmp_path.iterdir()] == ["keys"]


def test_keys_inside_the_repository_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    assert cli("trust", "repo", "init", repo, "--keys-dir", repo / "keys") == EXIT_USAGE
    assert "inside the repository" in capsys.readouterr().err
    assert not repo.exists()


def test_publish_copies_only_what_clients_fetch(maintained: Maintained, tmp_path: Path) -> None:
    (maintained.dir / "targets" / "notes.txt").write_text("not a target")
    (maintained.dir / "metadata" / "draft.json").write_text("{}")
    out = maintained.publish(tmp_path / "out")
    assert not (out / "targets" / "notes.txt").exists()
    assert not (out / "metadata" / "draft.json").exists()
    assert not (out / "repository.json").exists()


def test_expiry_is_configurable(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    argv = ["trust", "repo", "init", repo, "--keys-dir", tmp_path / "keys"]
    assert cli(*argv, "--expires", "timestamp=6h", "--expires", "root=730d") == 0
    now = datetime.now(UTC)
    timestamp = Metadata.from_bytes((repo / "metadata" / "timestamp.json").read_bytes()).signed
    root = Metadata.from_bytes((repo / "metadata" / "1.root.json").read_bytes()).signed
    assert abs(timestamp.expires - (now + timedelta(hours=6))) < timedelta(minutes=1)
    assert abs(root.expires - (now + timedelta(days=730))) < timedelta(minutes=1)
    targets = Metadata.from_bytes((repo / "metadata" / "1.targets.json").read_bytes()).signed
    assert abs(targets.expires - (now + timedelta(days=90))) < timedelta(minutes=1)


# --- changes


def test_a_change_without_keys_writes_nothing(
    maintained: Maintained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    before = tree(maintained.dir)
    assert cli("trust", "repo", "set-policy", maintained.dir, "x", policy) == EXIT_USAGE
    assert "--keys-dir" in capsys.readouterr().err
    empty = tmp_path / "empty-keys"
    empty.mkdir()
    assert cli("trust", "repo", "set-policy", maintained.dir, "x", policy, "--keys-dir", empty) == 2
    assert "0 of the 1 targets keys" in capsys.readouterr().err
    assert tree(maintained.dir) == before


def test_keys_readable_by_others_are_refused(
    maintained: Maintained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = next(maintained.keys.glob("timestamp-*.pem"))
    key.chmod(0o644)
    assert cli("trust", "repo", "resign", maintained.dir, "--keys-dir", maintained.keys) == 2
    assert "chmod 600" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("p", "issuer: https://token.actions.githubusercontent.com\n", "names no signer"),
        ("p", "ref: refs/heads/main\nevent: push\n", "names no signer"),
        ("p", "any-of:\n  - repository: o/r\n  - owner-regex: '.+'\n", "any-of[1]"),
        ("p", "repository: [unclosed\n", "not valid YAML or JSON"),
        ("p", "- a list\n", "mapping of policy fields"),
        ("Bad Name", "repository: o/r\n", "policy name"),
        ("p.json", "repository: o/r\n", "policy name"),
    ],
)
def test_set_policy_refuses_what_cannot_be_a_policy(
    maintained: Maintained,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    content: str,
    message: str,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(content)
    argv = ["trust", "repo", "set-policy", maintained.dir, name, policy, "--keys-dir"]
    assert cli(*argv, maintained.keys) == EXIT_USAGE
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["docker.io/library/*", "missing"], "no policy 'missing'"),
        (["alpine", "team"], "not a normalised"),
        (["docker.io/library/*", "team", "--rewrite", "mirror.gcr.io/*"], "FROM=TO"),
        (["docker.io/library/*", "team", "--rewrite", "a.io/*=b.io/x/y"], "same wildcards"),
    ],
)
def test_map_refuses_bad_rules(
    maintained: Maintained, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = tree(maintained.dir)
    argv = ["trust", "repo", "map", maintained.dir, *args, "--keys-dir", maintained.keys]
    assert cli(*argv) == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert tree(maintained.dir) == before


def test_map_changes_a_rule_in_place(maintained: Maintained) -> None:
    argv = ["trust", "repo", "map", maintained.dir, "docker.io/library/*", "team", "--keys-dir"]
    assert cli(*argv, maintained.keys) == 0
    mapping = maintained.repository().mapping()
    assert [(r.pattern, r.policy) for r in mapping.rules] == [
        ("docker.io/library/*", "policies/team.json"),
        ("ghcr.io/octo-org/**", "policies/team.json"),
    ]
    assert [(r.source, r.target) for r in mapping.rewrites] == [
        ("mirror.gcr.io/library/*", "docker.io/library/*")
    ]


def test_set_min_version_and_tsa_certs(maintained: Maintained, tmp_path: Path) -> None:
    keys = ["--keys-dir", maintained.keys]
    assert cli("trust", "repo", "set-min-version", maintained.dir, "0.1.0", *keys) == 0
    assert maintained.repository().mapping().min_verifier_version == "0.1.0"
    assert cli("trust", "repo", "set-min-version", maintained.dir, "v1", *keys) == EXIT_USAGE
    not_pem = tmp_path / "x.pem"
    not_pem.write_text("hello")
    assert cli("trust", "repo", "set-tsa-certs", maintained.dir, not_pem, *keys) == EXIT_USAGE


# --- the JWKS archive


@pytest.fixture
def emulator() -> Iterator[GitHubOIDCEmulator]:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as running:
        yield running


def test_add_jwks_fetches_the_live_jwks_and_keeps_rotated_keys(
    maintained: Maintained, emulator: GitHubOIDCEmulator
) -> None:
    add = ["trust", "repo", "add-jwks", maintained.dir, "--issuer", emulator.issuer, "--fetch"]
    keys = ["--keys-dir", maintained.keys]
    assert cli(*add, "--at", "1700000000", *keys) == 0
    emulator.rotate(drop_old=True, new_key=generated_op_key(1))
    assert cli(*add, "--at", "1700086400", *keys) == 0
    archive = maintained.repository().jwks_archive(emulator.issuer)
    assert archive is not None
    seen = {k.kid: (k.first_seen, k.last_seen) for k in archive.keys}
    assert seen == {
        generated_op_key(0).kid: (1700000000, 1700000000),
        generated_op_key(1).kid: (1700086400, 1700086400),
    }
    target = maintained.repository().targets().targets[jwks_target(emulator.issuer)]
    assert target.path == f"jwks/127.0.0.1_{emulator.url.rsplit(':', 1)[1]}.json"


def test_add_jwks_refuses_a_kid_with_new_key_material(
    maintained: Maintained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = maintained.repository().jwks_archive("https://token.actions.githubusercontent.com")
    assert archive is not None
    impostor = {**generated_op_key(1).public_jwk(), "kid": archive.keys[0].kid}
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [impostor]}))
    before = tree(maintained.dir)
    argv = ["trust", "repo", "add-jwks", maintained.dir, "--issuer", archive.issuer]
    assert cli(*argv, "--jwks-file", jwks, "--keys-dir", maintained.keys) == EXIT_TRUST
    assert "other key material" in capsys.readouterr().err
    assert tree(maintained.dir) == before


def test_add_jwks_from_an_issuer_without_keys_is_a_trust_error(
    maintained: Maintained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = tree(maintained.dir)
    with StaticServer() as nothing:  # answers 404 to the discovery request
        nothing.serve(tmp_path)
        argv = ["trust", "repo", "add-jwks", maintained.dir, "--issuer", nothing.url, "--fetch"]
        assert cli(*argv, "--keys-dir", maintained.keys) == EXIT_TRUST
    assert "HTTP 404" in capsys.readouterr().err
    assert tree(maintained.dir) == before


# --- resign and publish


def test_resign_bumps_versions_and_refreshes_expiries(maintained: Maintained) -> None:
    repo = maintained.repository()
    before = {role: repo.open(role).signed.version for role in ("targets", "snapshot", "timestamp")}
    assert cli("trust", "repo", "resign", maintained.dir, "--keys-dir", maintained.keys) == 0
    after = {role: repo.open(role).signed.version for role in ("targets", "snapshot", "timestamp")}
    assert after == {
        **before,
        "snapshot": before["snapshot"] + 1,
        "timestamp": before["timestamp"] + 1,
    }
    argv = ["trust", "repo", "resign", maintained.dir, "--keys-dir", maintained.keys]
    assert cli(*argv, "--role", "targets", "--role", "root") == 0
    assert repo.open("targets").signed.version == before["targets"] + 1
    assert repo.open("root").signed.version == 2
    assert (maintained.dir / "metadata" / "2.root.json").is_file()


def test_publish_writes_a_consistent_snapshot_layout(maintained: Maintained) -> None:
    published = tree(maintained.published)
    metadata = sorted(n.split("/", 1)[1] for n in published if n.startswith("metadata/"))
    assert metadata == sorted(
        ["1.root.json", "timestamp.json"]
        + [f"{v}.{role}.json" for v in range(1, 8) for role in ("targets", "snapshot")]
    )
    targets = Metadata[Any].from_bytes(published["metadata/7.targets.json"]).signed.targets
    assert sorted(targets) == [
        "jwks/token.actions.githubusercontent.com.json",
        "mapping.json",
        "policies/official-images.json",
        "policies/team.json",
        "tsa/certs.pem",
    ]
    for path, info in targets.items():
        directory, _, name = path.rpartition("/")
        prefix = f"targets/{directory}/" if directory else "targets/"
        data = published[f"{prefix}{info.hashes['sha256']}.{name}"]
        assert hashlib.sha256(data).hexdigest() == info.hashes["sha256"]
    # The policy is stored as JSON whatever the maintainer wrote it in.
    official = targets["policies/official-images.json"].hashes["sha256"]
    assert json.loads(published[f"targets/policies/{official}.official-images.json"]) == POLICY


def test_publish_again_writes_only_what_changed(maintained: Maintained) -> None:
    assert maintained.repository().publish(maintained.published) == []
    assert cli("trust", "repo", "resign", maintained.dir, "--keys-dir", maintained.keys) == 0
    written = maintained.repository().publish(maintained.published)
    assert [p.name for p in written] == ["8.snapshot.json", "timestamp.json"]
    assert (maintained.published / "metadata" / "7.snapshot.json").is_file()  # old ones stay


def test_publish_refuses_an_inconsistent_repository(
    maintained: Maintained, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for mapping in (maintained.dir / "targets").glob("*.mapping.json"):
        mapping.write_bytes(b'{"version": 1, "rules": []}')  # not what targets.json signed
    out = tmp_path / "out"
    assert cli("trust", "repo", "publish", maintained.dir, out) == EXIT_TRUST
    assert "not consistent" in capsys.readouterr().err
    assert not out.exists()


def test_publish_refuses_expired_metadata(maintained: Maintained, tmp_path: Path) -> None:
    stale = maintained.repository(clock=lambda: datetime.now(UTC) - timedelta(days=30))
    stale.resign()
    assert cli("trust", "repo", "publish", maintained.dir, tmp_path / "out") == EXIT_TRUST
    assert cli("trust", "repo", "resign", maintained.dir, "--keys-dir", maintained.keys) == 0
    assert cli("trust", "repo", "publish", maintained.dir, tmp_path / "out") == 0


def test_an_interrupted_change_leaves_the_previous_state(
    maintained: Maintained, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash_at_timestamp(path: Path, data: bytes, mode: int = 0o644) -> None:
        if path.name == "timestamp.json":
            raise OSError(28, "No space left on device", str(path))
        write_atomic(path, data, mode)

    monkeypatch.setattr(repository_module, "write_atomic", crash_at_timestamp)
    argv = ["trust", "repo", "set-min-version", maintained.dir, "9.9.9", "--keys-dir"]
    assert cli(*argv, maintained.keys) == EXIT_FAILURE
    monkeypatch.undo()
    # Clients still get the previous, complete state...
    maintained.repository().check()
    timestamp = signed(maintained.dir / "metadata" / "timestamp.json")
    assert timestamp.version == 7  # type: ignore[attr-defined]
    # ...and the next change builds on what was written.
    assert cli("trust", "repo", "resign", maintained.dir, "--keys-dir", maintained.keys) == 0
    maintained.repository().check()
    assert maintained.repository().mapping().min_verifier_version == "9.9.9"


def test_not_a_repository(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("trust", "repo", "publish", tmp_path, tmp_path / "out") == EXIT_USAGE
    assert "not an opk-sign trust repository" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["trust", "--help"], ["trust", "repo", "--help"]])
def test_help_lists_exit_codes(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(*argv) == 0
    assert "exit codes:" in capsys.readouterr().out
