"""The monitor's own rules: whose signatures, which workflows are expected, the state file, and
when `sign --tlog auto` logs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opk_sign.errors import UsageError
from opk_sign.tlog.merkle import CompactRange, leaf_hash
from opk_sign.tlog.modes import should_log
from opk_sign.tlog.monitor import Identity, MonitorState, workflow_expected

WORKFLOW = "octo-org/app/.github/workflows/release.yml"


def test_identity() -> None:
    claims = {"repository": "octo-org/app", "repository_owner": "octo-org"}
    assert Identity(repository="octo-org/app").matches(claims)
    assert not Identity(repository="octo-org/other").matches(claims)
    assert Identity(owner="octo-org").matches(claims)
    assert not Identity(owner="octo").matches(claims)
    for bad in ({}, {"repository": "a/b", "owner": "a"}):
        with pytest.raises(UsageError):
            Identity(**bad)


def test_expected_workflows() -> None:
    assert workflow_expected(f"{WORKFLOW}@refs/tags/v1", {WORKFLOW})
    assert workflow_expected(f"{WORKFLOW}@refs/tags/v1", {f"{WORKFLOW}@refs/tags/v1"})
    assert not workflow_expected(f"{WORKFLOW}@refs/heads/dev", {f"{WORKFLOW}@refs/tags/v1"})
    assert not workflow_expected("octo-org/app/.github/workflows/sneaky.yml@main", {WORKFLOW})
    assert not workflow_expected(f"{WORKFLOW}@main", set())


def test_the_state_round_trips_and_refuses_what_it_is_not(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    assert MonitorState.load(path) is None
    tree = CompactRange()
    for i in range(5):
        tree = tree.append(leaf_hash(bytes([i])))
    MonitorState("log.example", tree).save(path)
    loaded = MonitorState.load(path)
    assert loaded == MonitorState("log.example", tree)
    doc = json.loads(path.read_text())
    for change in ({"size": 4}, {"compactRange": ["!!"]}, {"origin": 3}, {"size": "5"}):
        path.write_text(json.dumps({**doc, **change}))
        with pytest.raises(UsageError, match="not a monitor state"):
            MonitorState.load(path)
    path.write_text("x" * 20000)
    with pytest.raises(UsageError, match="larger"):
        MonitorState.load(path)


@pytest.mark.parametrize(
    ("mode", "visibility", "logs"),
    [
        ("auto", "public", True),
        ("auto", "private", False),
        ("auto", "internal", False),
        ("auto", None, False),
        ("always", "private", True),
        ("never", "public", False),
    ],
)
def test_when_signing_logs(mode: str, visibility: str | None, logs: bool) -> None:
    claims = {} if visibility is None else {"repository_visibility": visibility}
    assert should_log(mode, claims) is logs
