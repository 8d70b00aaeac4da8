"""A decision's one line and its audit record (issue 15)."""

from __future__ import annotations

import json

from opk_sign.admission.decision import MAX_REASON, Decision, one_line


def refusal(**changes: object) -> Decision:
    fields: dict[str, object] = {
        "image": "ghcr.io/o/app:v1",
        "allowed": False,
        "outcome": "no-signatures",
        "exit_code": 10,
        "required": "a signature satisfying repository == 'o/app'",
        "found": "sha256:ab: no opk-sign signatures\n  - detail one\n  - detail two",
        "digest": "sha256:" + "ab" * 32,
    }
    fields.update(changes)
    return Decision(**fields)  # type: ignore[arg-type]


def test_reason_is_one_line_with_required_found_and_exit_code() -> None:
    line = refusal().reason()
    assert "\n" not in line
    assert line.startswith("opk-sign refused ghcr.io/o/app:v1@sha256:abab")
    assert "required: a signature satisfying repository == 'o/app'" in line
    assert "found: sha256:ab: no opk-sign signatures; detail one; detail two" in line
    assert line.endswith("`opk-sign verify` exits 10 (no-signatures)")


def test_text_from_registries_cannot_forge_lines_or_escape_sequences() -> None:
    line = refusal(found="bad\x1b[2Jthing\rallowed\nopk-sign allowed x").reason()
    assert "\x1b" not in line and "\r" not in line and "\n" not in line
    assert "\\x1b[2J" in line


def test_reason_is_bounded() -> None:
    assert len(refusal(found="x" * 10_000).reason()) == MAX_REASON
    assert one_line("a\n   - b") == "a; b"


def test_audit_record() -> None:
    record = json.loads(refusal(rule="ghcr.io/o/*", cache=None).audit_line(now=0))
    assert record["time"] == "1970-01-01T00:00:00Z"
    assert record["decision"] == "refuse" and record["exitCode"] == 10
    assert record["rule"] == "ghcr.io/o/*" and "\n" not in record["found"]
    allowed = refusal(allowed=True, outcome="verified", exit_code=0, identity={"repository": "o"})
    assert json.loads(allowed.audit_line())["identity"] == {"repository": "o"}
