"""Trust that lasts, through `opk-sign verify` (issue 6): a TUF repository built with the maintainer
commands and served over HTTP drives verification by default; the JWKS archive carries a rotated
key; python-tuf's refusals end verification with exit 14."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from opk_sign._dev.github_oidc import GitHubOIDCEmulator
from opk_sign.cli.main import main
from opk_sign.errors import (
    EXIT_INVALID_SIGNATURE,
    EXIT_NO_SIGNATURES,
    EXIT_OK,
    EXIT_POLICY_MISMATCH,
    EXIT_TRUST,
    EXIT_USAGE,
)
from opk_sign.oci.client import RegistryClient
from opk_sign.oci.keychain import Keychain
from opk_sign.oidc import GitHubActionsProvider
from opk_sign.sign.image import SigningOptions, sign_image
from opk_sign.trust.jwks_archive import JWKSArchive
from opk_sign.trust.repository import TrustRepository
from tests.services.images import push_sample_image
from tests.services.oidc import generated_op_key
from tests.services.registries import Registry, olareg
from tests.services.tsa import TimestampAuthority
from tests.services.tuf import StaticServer

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("verify-trust")]

REPO = "octo-org/app"


def _client() -> RegistryClient:
    return RegistryClient(Keychain.anonymous())


def _push_and_sign(emulator: GitHubOIDCEmulator | None, ref: str) -> None:
    with _client() as c:
        push_sample_image(c, ref, ("linux/amd64",), index=False)
        if emulator is not None:
            provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
            sign_image(ref, provider=provider, client=c)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with olareg(tmp_path_factory.mktemp("olareg")) as running:
        yield running


@pytest.fixture
def trust_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "trust"
    monkeypatch.setenv("OPK_SIGN_TRUST_DIR", str(directory))
    return directory


def cli(*argv: object) -> int:
    return main([str(a) for a in argv])


# --- key rotation: the archive carries the key the issuer dropped (item 2) ----------------------


def test_rotated_key_verifies_through_the_archive_only(registry: Registry, tmp_path: Path) -> None:
    with GitHubOIDCEmulator(key=generated_op_key(2)) as emulator:
        emulator.set_claims(repository=REPO)
        image = registry.ref("octo-org/rotated", "v1")
        _push_and_sign(emulator, image)  # signed with K1
        archive = JWKSArchive(emulator.issuer).observe(emulator.jwks(), int(time.time()))
        archive_file = tmp_path / "archive.json"
        archive_file.write_bytes(archive.to_json())
        # GitHub-style rotation: K2 becomes current and K1 leaves the live JWKS.
        emulator.rotate(drop_old=True)
        kids = [k["kid"] for k in emulator.jwks()["keys"]]
        assert generated_op_key(2).kid not in kids

        base = ("verify", "--issuer", emulator.issuer, "--repository", REPO, image)
        assert cli(*base) == EXIT_INVALID_SIGNATURE  # K1 is gone from the live JWKS
        assert cli(*base, "--jwks-archive", archive_file) == EXIT_OK
        # An archive that never saw K1 does not help.
        lacking = JWKSArchive(emulator.issuer).observe(emulator.jwks(), int(time.time()))
        lacking_file = tmp_path / "lacking.json"
        lacking_file.write_bytes(lacking.to_json())
        assert cli(*base, "--jwks-archive", lacking_file) == EXIT_INVALID_SIGNATURE
        # Nor does one whose window for K1 ended before the token was issued.
        stale = JWKSArchive(emulator.issuer).observe(
            {"keys": [generated_op_key(2).public_jwk()]}, int(time.time()) - 30 * 86400
        )
        stale_file = tmp_path / "stale.json"
        stale_file.write_bytes(stale.to_json())
        assert cli(*base, "--jwks-archive", stale_file) == EXIT_INVALID_SIGNATURE


# --- verification by default through the TUF mapping (items 1 and 4) -----------------------------


@dataclass(frozen=True)
class Published:
    server: StaticServer
    work: Path
    keys: Path
    out: Path
    emulator: GitHubOIDCEmulator
    signed: str
    stripped: str
    impostor: str
    unmapped: str


@pytest.fixture
def published(registry: Registry, tmp_path: Path, trust_dir: Path) -> Iterator[Published]:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as emulator, StaticServer() as server:
        emulator.set_claims(repository=REPO, ref="refs/tags/v1")
        stamp = f"{os.getpid()}-{time.monotonic_ns()}"
        signed = registry.ref(f"octo-org/app-{stamp}", "v1")
        stripped = registry.ref(f"octo-org/stripped-{stamp}", "v1")
        impostor = registry.ref(f"octo-org/impostor-{stamp}", "v1")
        unmapped = registry.ref(f"elsewhere/app-{stamp}", "v1")
        _push_and_sign(emulator, signed)
        _push_and_sign(None, stripped)  # its signatures were stripped (or never made)
        _push_and_sign(emulator, unmapped)
        emulator.set_claims(repository="evil-org/app")
        _push_and_sign(emulator, impostor)
        emulator.set_claims(repository=REPO)

        work, keys, out = tmp_path / "repo", tmp_path / "keys", tmp_path / "published"
        inputs = tmp_path / "inputs"
        inputs.mkdir()
        (inputs / "team.json").write_text(
            json.dumps({"issuer": emulator.issuer, "repository": REPO, "ref-type": "tag"})
        )
        (inputs / "jwks.json").write_text(json.dumps(emulator.jwks()))
        for step in (
            ("init", work, "--keys-dir", keys),
            ("set-policy", work, "team", inputs / "team.json", "--keys-dir", keys),
            ("map", work, f"{registry.host}/octo-org/*", "team", "--keys-dir", keys),
            ("add-jwks", work, "--issuer", emulator.issuer, "--jwks-file", inputs / "jwks.json"),
            ("publish", work, out),
        ):
            extra = () if "--keys-dir" in step or step[0] == "publish" else ("--keys-dir", keys)
            assert cli("trust", "repo", *step, *extra) == 0, step
        server.serve(out)
        assert (
            cli("trust", "init", "--root", out / "metadata" / "1.root.json", "--url", server.url)
            == 0
        )
        yield Published(server, work, keys, out, emulator, signed, stripped, impostor, unmapped)


def verify_by_default(p: Published, *images: str, **flags: str) -> int:
    extra = [item for k, v in flags.items() for item in (f"--{k.replace('_', '-')}", v)]
    return cli("verify", "--issuer", p.emulator.issuer, *extra, *images)


def test_mapped_image_verifies_by_default(published: Published) -> None:
    assert verify_by_default(published, published.signed) == EXIT_OK


def test_mapped_image_signed_by_another_repository_fails(published: Published) -> None:
    assert verify_by_default(published, published.impostor) == EXIT_POLICY_MISMATCH


def test_stripping_signatures_of_a_mapped_image_fails(published: Published) -> None:
    # Signature stripping is a downgrade that fails (10), never a pass.
    assert verify_by_default(published, published.stripped) == EXIT_NO_SIGNATURES


def test_unmapped_image_without_flags_is_a_usage_error(
    published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify_by_default(published, published.unmapped) == EXIT_USAGE
    assert "no policy applies" in capsys.readouterr().out
    # With a policy on the command line it verifies as usual.
    assert verify_by_default(published, published.unmapped, repository=REPO) == EXIT_OK


def test_nothing_installed_and_no_flags_is_a_usage_error(
    registry: Registry, trust_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("verify", registry.ref("octo-org/any", "v1")) == EXIT_USAGE
    assert "trust init" in capsys.readouterr().err


def test_rollback_of_trust_data_is_exit_14(published: Published, tmp_path: Path) -> None:
    old = tmp_path / "old-published"
    shutil.copytree(published.out, old)
    # The maintainer publishes version 2; the client sees it.
    assert cli("trust", "repo", "resign", published.work, "--keys-dir", published.keys) == 0
    assert cli("trust", "repo", "publish", published.work, published.out) == 0
    assert verify_by_default(published, published.signed) == EXIT_OK
    # An attacker serves the older, validly signed repository.
    published.server.serve(old)
    assert verify_by_default(published, published.signed) == EXIT_TRUST


def test_freeze_on_expired_trust_data_is_exit_14(published: Published, tmp_path: Path) -> None:
    # What a frozen mirror keeps serving: a timestamp signed ten days ago, valid for three.
    ten_days_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    repository = TrustRepository(published.work, published.keys, clock=lambda: ten_days_ago)
    repository.resign(["timestamp"])
    frozen = tmp_path / "frozen"
    TrustRepository(published.work, published.keys, clock=lambda: ten_days_ago).publish(frozen)
    published.server.serve(frozen)
    assert verify_by_default(published, published.signed) == EXIT_TRUST


def test_mix_and_match_of_trust_data_is_exit_14(published: Published, tmp_path: Path) -> None:
    assert verify_by_default(published, published.signed) == EXIT_OK  # the client is current
    # The maintainer changes the policy and publishes; the attacker serves the new timestamp
    # and snapshot with the previous targets metadata under the new name.
    changed = tmp_path / "changed.json"
    changed.write_text(json.dumps({"issuer": published.emulator.issuer, "repository": REPO}))
    keys = ("--keys-dir", published.keys)
    assert cli("trust", "repo", "set-policy", published.work, "team", changed, *keys) == 0
    assert cli("trust", "repo", "publish", published.work, published.out) == 0
    versions = sorted(
        int(p.name.split(".")[0]) for p in (published.out / "metadata").glob("*.targets.json")
    )
    new, old = versions[-1], versions[-2]
    metadata = published.out / "metadata"
    (metadata / f"{new}.targets.json").write_bytes((metadata / f"{old}.targets.json").read_bytes())
    assert verify_by_default(published, published.signed) == EXIT_TRUST


def test_unreachable_trust_repository_is_exit_14(published: Published) -> None:
    published.server.serve(published.out / "nonexistent")
    assert verify_by_default(published, published.signed) == EXIT_TRUST


def test_offline_uses_the_cache_and_says_so(
    published: Published, capsys: pytest.CaptureFixture[str]
) -> None:
    assert verify_by_default(published, published.signed) == EXIT_OK  # fills the cache
    published.server.serve(published.out / "nonexistent")
    capsys.readouterr()
    assert cli("verify", "--offline", "--issuer", published.emulator.issuer, published.signed) == 0
    assert "offline: using cached trust data" in capsys.readouterr().err


# --- time: a timestamped signature outlives the PK token's 24 hours (item 3) ----------------------


@pytest.mark.skipif(shutil.which("faketime") is None, reason="needs faketime (scripts/setup)")
def test_timestamped_signature_verifies_30_days_later_through_the_cli(
    registry: Registry, tsa: TimestampAuthority, tmp_path: Path
) -> None:
    with GitHubOIDCEmulator(key=generated_op_key(0)) as emulator, _client() as c:
        emulator.set_claims(repository=REPO)
        stamped = registry.ref("octo-org/stamped", "v1")
        plain = registry.ref("octo-org/plain", "v1")
        provider = GitHubActionsProvider(env=emulator.env(), issuer=emulator.issuer)
        for ref, url in ((stamped, tsa.url), (plain, None)):
            push_sample_image(c, ref, ("linux/amd64",), index=False)
            sign_image(ref, provider=provider, client=c, options=SigningOptions(timestamp_url=url))
        jwks, certs = tmp_path / "jwks.json", tmp_path / "tsa.pem"
        jwks.write_text(json.dumps(emulator.jwks()))
        certs.write_bytes(tsa.chain_pem)
        issuer = emulator.issuer

    def later(*argv: object) -> subprocess.CompletedProcess[str]:
        # The verifier's whole process runs with its clock 30 days ahead (libfaketime).
        command = [
            *("faketime", "+30 days", sys.executable, "-m", "opk_sign.cli", "verify"),
            *("--issuer", issuer, "--repository", REPO, "--jwks", str(jwks), "--no-trust-repo"),
            *(str(a) for a in argv),
        ]
        return subprocess.run(command, check=False, capture_output=True, text=True, timeout=60)

    clock = subprocess.run(
        ["faketime", "+30 days", sys.executable, "-c", "import time; print(time.time())"],
        check=True,
        capture_output=True,
        text=True,
    )
    assert float(clock.stdout) > time.time() + 29 * 86400
    ok = later(stamped, "--tsa-certs", certs)
    assert ok.returncode == EXIT_OK, ok.stdout + ok.stderr
    # Without trusting the TSA, the 24-hour policy applies now: expired.
    expired = later(stamped)
    assert expired.returncode == EXIT_INVALID_SIGNATURE, expired.stdout + expired.stderr
    assert "expired" in expired.stdout
    # Without a timestamp, trusting the TSA does not help.
    plain_run = later(plain, "--tsa-certs", certs)
    assert plain_run.returncode == EXIT_INVALID_SIGNATURE, plain_run.stdout + plain_run.stderr
