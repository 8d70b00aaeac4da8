"""The architecture contracts (pyproject.toml, [tool.importlinter]; docs/adr/0007-module-layout.md)
hold, and the checker can fail: a fixture package that breaks a contract is reported as broken."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "broken_contract"


def lint_imports(*args: str, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run(
        [exe, "--no-cache", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def test_the_projects_contracts_are_kept() -> None:
    done = lint_imports(cwd=ROOT, pythonpath=ROOT / "src")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_broken_contract_is_reported() -> None:
    done = lint_imports("--config", str(FIXTURE / ".importlinter"), cwd=FIXTURE, pythonpath=FIXTURE)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "BROKEN" in done.stdout
    assert "brokenpkg.pure is not allowed to import brokenpkg.network" in done.stdout
