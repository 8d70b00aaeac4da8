"""The verifier's fast path (a digest in the cache, decided from the trust state alone) holds
only under the settings the rule's fingerprint was computed under: the settings file is read on
every pull, and after the issuer changes, digests verified under the old one must take the full
path (red team: they stayed allowed from the cache until the TTL)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from opk_sign.admission.cache import cache_key
from opk_sign.admission.engine import STATE_FILE, Engine
from opk_sign.admission.settings import Settings
from opk_sign.trust.mapping import Mapping, Rule

DIGEST = "sha256:" + "ab" * 32
MAPPING = Mapping((Rule("ghcr.io/octo-org/*", "policies/app.json"),))
OLD = "https://ghes.example/_services/token"
NEW = "https://token.actions.githubusercontent.com"
VERSION = "root 1, targets 3, sha256 00"


def _engine(tmp_path: Path, issuer: str) -> Engine:
    trust = tmp_path / "trust"
    trust.mkdir(exist_ok=True)
    (trust / "config.json").write_text("{}")
    (trust / "root.json").write_text("{}")
    env = {"OPK_SIGN_TRUST_DIR": str(trust)}
    return Engine(
        Settings(cache_dir=tmp_path / "cache", issuer=issuer), environ=env, notice=lambda _: None
    )


def _verified_under(tmp_path: Path, issuer: str) -> None:
    """The state and cache a pull under ``issuer`` left behind."""
    engine = _engine(tmp_path, issuer)
    fingerprint = "\n".join(
        ["policies/app.json", "0" * 64, issuer, "", "require-tlog False", "source None"]
    )
    now = time.time()
    rule = {"fingerprint": fingerprint, "required": "policy app", "issuer": issuer}
    state = {
        "anchor": engine._anchor(),
        "refreshedAt": now,
        "expires": now + 3600,
        "trustVersion": VERSION,
        "mapping": MAPPING.to_dict(),
        "rules": {"ghcr.io/octo-org/*": rule},
    }
    path = tmp_path / "cache" / STATE_FILE
    path.write_text(json.dumps(state))
    path.chmod(0o600)
    key = cache_key(
        digest=DIGEST, name="ghcr.io/octo-org/app", policy=fingerprint, trust_version=VERSION
    )
    engine.cache.put(key, "ghcr.io/octo-org/app@" + DIGEST)


def test_the_fast_path_answers_under_the_same_settings(tmp_path: Path) -> None:
    _verified_under(tmp_path, OLD)
    decision = _engine(tmp_path, OLD).decide("ghcr.io/octo-org/app:v1", DIGEST)
    assert decision.allowed and decision.cache == "hit"


def test_another_issuer_takes_the_full_path(tmp_path: Path) -> None:
    _verified_under(tmp_path, OLD)
    decision = _engine(tmp_path, NEW).decide("ghcr.io/octo-org/app:v1", DIGEST)
    assert not decision.allowed and decision.cache != "hit"
