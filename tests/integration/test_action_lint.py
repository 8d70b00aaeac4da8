"""actionlint and zizmor pass on the action metadata and on every workflow of the repository.

actionlint checks an action's metadata (action.yml) only through a workflow that uses it, so a
probe workflow in a scratch copy of the repository calls the action with every input; that also
checks that the inputs the docs promise exist and no required one is missing.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.services.tools import tool_path

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ACTIONS = sorted(p for p in (ROOT / "action.yml", ROOT / "verify" / "action.yml") if p.is_file())
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
DEPENDABOT = ROOT / ".github" / "dependabot.yml"


def zizmor() -> Path:
    found = shutil.which("zizmor") or (Path(__file__).parents[2] / ".venv" / "bin" / "zizmor")
    return Path(found)


def run(argv: list[str | Path], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def probe_workflow(action: Path, *extra_inputs: str) -> str:
    """A workflow that uses ``action`` locally with every input it declares (and ``extra``)."""
    metadata = yaml.safe_load(action.read_text())
    inputs = {name: "x" for name in [*metadata.get("inputs", {}), *extra_inputs]}
    where = action.parent.relative_to(ROOT)
    step: dict[str, object] = {"uses": "./" if where == Path() else f"./{where.as_posix()}"}
    if inputs:
        step["with"] = inputs
    workflow = {
        "name": "probe",
        "on": {"workflow_dispatch": {}},
        "permissions": {},
        "jobs": {
            "probe": {
                "runs-on": "ubuntu-24.04",
                "permissions": {"id-token": "write", "contents": "read"},
                "steps": [step],
            }
        },
    }
    return yaml.safe_dump(workflow, sort_keys=False)


def test_there_is_something_to_lint() -> None:
    assert ROOT / "action.yml" in ACTIONS
    assert ROOT / "verify" / "action.yml" in ACTIONS
    names = {w.name for w in WORKFLOWS}
    assert {"sign.yml", "ci.yml", "verify.yml", "release.yml"} <= names
    assert DEPENDABOT.is_file()


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint_passes_on_workflow(workflow: Path) -> None:
    result = run([tool_path("actionlint"), "-no-color", workflow])
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("action", ACTIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_actionlint_passes_on_action_metadata(action: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "repo"
    target = scratch / action.parent.relative_to(ROOT)
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(action, target / "action.yml")
    # What the metadata names is checked to exist: the Dockerfile, wherever runs.image puts it
    # (the verify action builds the root Dockerfile, ../Dockerfile).
    image = str(yaml.safe_load(action.read_text()).get("runs", {}).get("image", ""))
    if image and not image.startswith("docker://"):
        dockerfile = target / image
        dockerfile.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(action.parent / image, dockerfile)
    # actionlint finds the project through its Git repository.
    subprocess.run(["git", "init", "-q", str(scratch)], check=True)
    (scratch / ".github" / "workflows").mkdir(parents=True)
    probe = scratch / ".github" / "workflows" / "probe.yml"
    probe.write_text(probe_workflow(action))
    result = run([tool_path("actionlint"), "-no-color", probe], cwd=scratch)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check can fail: an input the action does not declare is reported.
    probe.write_text(probe_workflow(action, "no-such-input"))
    result = run([tool_path("actionlint"), "-no-color", probe], cwd=scratch)
    assert result.returncode != 0 and "no-such-input" in result.stdout


def test_zizmor_passes_offline_on_actions_and_workflows() -> None:
    result = run([zizmor(), "--offline", "--no-progress", *ACTIONS, *WORKFLOWS, DEPENDABOT])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "dependabot.yml" in result.stderr + result.stdout  # audited, not skipped


def test_zizmor_catches_a_template_injection(tmp_path: Path) -> None:
    # The gate can fail: the classic injection of an input into shell text is reported.
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "name: bad\non: {workflow_dispatch: {inputs: {x: {type: string}}}}\npermissions: {}\n"
        "jobs:\n  j:\n    runs-on: ubuntu-24.04\n    steps:\n"
        "      - run: echo ${{ github.event.issue.title }} ${{ inputs.x }}\n"
    )
    result = run([zizmor(), "--offline", "--no-progress", bad])
    assert result.returncode != 0 and "template-injection" in result.stdout
