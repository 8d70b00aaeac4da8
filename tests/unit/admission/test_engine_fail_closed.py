"""Without usable trust data the engine fails closed (issue 15): mapped names are refused; the
mapping last seen still lets unmapped names through, as the settings say."""

from __future__ import annotations

import json
from pathlib import Path

from opk_sign.admission.engine import STATE_FILE, Engine
from opk_sign.admission.settings import Settings
from opk_sign.trust.mapping import Mapping, Rule

DIGEST = "sha256:" + "ab" * 32


def engine(tmp_path: Path, **settings: object) -> Engine:
    return Engine(
        Settings(cache_dir=tmp_path / "cache", **settings),  # type: ignore[arg-type]
        environ={"OPK_SIGN_TRUST_DIR": str(tmp_path / "no-trust")},
        notice=lambda _: None,
    )


def test_nothing_known_refuses_everything(tmp_path: Path) -> None:
    decision = engine(tmp_path).decide("ghcr.io/o/app:v1", DIGEST)
    assert not decision.allowed and decision.exit_code == 14
    assert "every name is refused" in decision.found


def test_the_mapping_last_seen_tells_mapped_from_unmapped(tmp_path: Path) -> None:
    mapping = Mapping((Rule("ghcr.io/o/*", "policies/team.json"),))
    first = engine(tmp_path)  # creates the cache directory, owner-only
    state = tmp_path / "cache" / STATE_FILE
    state.write_text(json.dumps({"refreshedAt": 0, "mapping": mapping.to_dict()}))
    state.chmod(0o600)
    mapped = first.decide("ghcr.io/o/app:v1", DIGEST)
    assert not mapped.allowed and mapped.exit_code == 14
    assert "mapped names are refused (fail closed)" in mapped.found
    assert mapped.rule == "ghcr.io/o/*"
    unmapped = first.decide("ghcr.io/elsewhere/app:v1", DIGEST)
    assert unmapped.allowed and unmapped.outcome == "unmapped"
    denied = engine(tmp_path, unmapped="deny").decide("ghcr.io/elsewhere/app:v1", DIGEST)
    assert not denied.allowed and denied.exit_code == 2


def test_a_trust_state_others_could_write_is_refused(tmp_path: Path) -> None:
    engine(tmp_path)
    state = tmp_path / "cache" / STATE_FILE
    state.write_text(json.dumps({"mapping": {"version": 1, "rules": []}}))
    state.chmod(0o666)
    decision = engine(tmp_path).decide("ghcr.io/o/app:v1", DIGEST)
    assert not decision.allowed and "another user could write" in decision.found


def test_a_name_naming_another_digest_is_refused(tmp_path: Path) -> None:
    other = "sha256:" + "cd" * 32
    decision = engine(tmp_path).decide(f"ghcr.io/o/app@{other}", DIGEST)
    assert not decision.allowed and decision.exit_code == 2
    assert "not the digest sha256:abab" in decision.found


def test_the_fast_path_needs_fresh_unexpired_trust_state(tmp_path: Path) -> None:
    """A cached digest is allowed from the trust state alone only while that state is what the
    TUF client would use: refreshed within refresh-interval and no metadata expired."""
    import time

    from opk_sign.admission.cache import cache_key

    mapping = Mapping((Rule("ghcr.io/o/*", "policies/team.json"),))
    first = engine(tmp_path)
    installed = tmp_path / "no-trust"  # what `trust init` wrote (the fast path hashes it)
    installed.mkdir()
    (installed / "config.json").write_text('{"metadataUrl": "https://a.example/metadata/"}')
    (installed / "root.json").write_text("{}")
    now = time.time()
    state = {
        "anchor": first._anchor(),
        "refreshedAt": now,
        "expires": now + 3600,
        "trustVersion": "root 1, targets 3",
        "mapping": mapping.to_dict(),
        "rules": {
            "ghcr.io/o/*": {
                "fingerprint": "fp",
                "required": "a signature by o/app",
                "issuer": first._issuer(),
            }
        },
    }
    key = cache_key(
        digest=DIGEST, name="ghcr.io/o/app", policy="fp", trust_version="root 1, targets 3"
    )
    first.cache.put(key, "ghcr.io/o/app@" + DIGEST)
    path = tmp_path / "cache" / STATE_FILE

    def decide(**changes: object) -> bool:
        path.write_text(json.dumps({**state, **changes}))
        path.chmod(0o600)
        return engine(tmp_path).decide("ghcr.io/o/app:v1", DIGEST).allowed

    assert decide()
    assert not decide(expires=now - 1)  # expired trust data: the full path, which fails closed
    assert not decide(refreshedAt=now - 301)  # a refresh is due: the full path
    assert not decide(trustVersion="root 1, targets 4")  # another version: another key
    assert not decide(rules={"ghcr.io/o/*": {"fingerprint": "other", "required": "x"}})
    assert not decide(rules={})
    assert not decide(anchor=None)  # a state of before the anchor: the full path
    assert decide()
    # Red-team F14: `trust init` with another repository voids the fast path at once.
    (installed / "config.json").write_text('{"metadataUrl": "https://b.example/metadata/"}')
    assert not decide()
