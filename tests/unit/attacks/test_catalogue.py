"""The attack catalogue (docs/attacks.md): every tampering refused by its own check, and its
control passing. The world is ``world.py``; the cases, one module per part of a bundle, register
themselves with ``@attack`` when imported here."""

from __future__ import annotations

import functools
import re
from typing import Final

import pytest

from opk_sign.errors import OpkSignError
from opk_sign.policy import FIELDS
from tests.unit.attacks import cases_dsse, cases_osm, cases_pktoken, cases_policy, cases_trust
from tests.unit.attacks.world import CATALOGUE, DOCS, Attack, Run, world

CASE_MODULES = (cases_pktoken, cases_trust, cases_osm, cases_dsse, cases_policy)


# --- the tests -----------------------------------------------------------------------------------

IDS: Final = [c.name for c in CATALOGUE]


@functools.cache
def runs(name: str) -> tuple[Run, Run]:
    """A case's control and attack, built once per process (minting costs ~10 ms a token)."""
    (case,) = (c for c in CATALOGUE if c.name == name)
    return case.build(world())


@pytest.mark.parametrize("case", CATALOGUE, ids=IDS)
def test_attack_is_refused(case: Attack) -> None:
    control, tampered = runs(case.name)
    assert control != tampered, "the attack must change something"
    with pytest.raises(OpkSignError) as info:
        tampered()
    err = info.value
    assert type(err) is case.error, f"{type(err).__name__}: {err}"
    assert case.fragment in err.message, err.message
    assert err.exit_code == case.exit_code


@pytest.mark.parametrize("case", CATALOGUE, ids=IDS)
def test_control_passes(case: Attack) -> None:
    """The same verifier settings accept the untampered original: the catalogue can fail."""
    control, _ = runs(case.name)
    control()


def test_catalogue_size_and_distinct_names() -> None:
    assert len(CATALOGUE) >= 30
    assert len(set(IDS)) == len(IDS)
    assert all(re.fullmatch(r"[a-z0-9_]+", name) for name in IDS)


def test_every_policy_field_has_a_case() -> None:
    for name in FIELDS:
        assert f"policy_{name.replace('-', '_')}_mismatch" in IDS


def test_docs_table_every_case() -> None:
    """docs/attacks.md names every case, with its error class and exit code."""
    text = DOCS.read_text(encoding="utf-8")
    assert f"{len(CATALOGUE)} cases on the pure verifier" in text
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9_]+)` \|.*$", text, re.M)}
    for case in CATALOGUE:
        assert case.name in rows, f"docs/attacks.md lacks {case.name}"
        assert f"`{case.error.__name__}`" in rows[case.name], case.name
        assert f"| {case.exit_code} |" in rows[case.name], case.name
