"""`make demo` (scripts/demo.sh) runs end to end, quickly, shows what it promises, and cleans up."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("demo")]

ROOT = Path(__file__).resolve().parents[2]


def test_demo_signs_shows_outputs_summary_and_referrers(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        env={**os.environ, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    elapsed = time.monotonic() - started
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert elapsed < 120
    for promised in (
        "3. Run entrypoint.py",
        "digest = sha256:",
        "identity = opk-sign/opk-sign/.github/workflows/sign.yml@refs/tags/v1",
        "| Manifest | Platform | Signed | Attestations |",
        "application/vnd.dev.opk-sign.signature.v1+json",
        "application/vnd.dev.opk-sign.attestation.v1+json",
        "6. opk-sign verify",
        "verified (exit 0)",
        "job_workflow_ref: opk-sign/opk-sign/.github/workflows/sign.yml@refs/tags/v1",
        "policy-mismatch (exit 11)",
        "claim 'repository' is 'octo-org/hello-opk'",
    ):
        assert promised in out
    signatures = re.search(r"^signatures = (.*)$", out, re.MULTILINE)
    assert signatures is not None and signatures.group(1).count("sha256:") == 3
    # The runner hides ::add-mask:: commands and so does the demo: no secret reaches the screen.
    assert "::add-mask::" not in out
    # Cleaned up: the scratch directory is gone and nothing it started is left running.
    assert list(tmp_path.iterdir()) == []
