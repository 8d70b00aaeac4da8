"""The runner contract both actions share (opk_sign.actions.runner): annotations without empty
properties, errors in the action's words rather than the CLI's flags, and file inputs confined to
the workspace."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from unittest import mock

import pytest

from opk_sign.actions import runner
from opk_sign.actions import sign as sign_action
from opk_sign.actions import verify as verify_action
from opk_sign.actions.runner import Vocabulary, annotate_error, run_main, workspace_path
from opk_sign.errors import EXIT_USAGE, UsageError
from opk_sign.policy import policy_field_names

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "src" / "opk_sign"

# --- annotations ----------------------------------------------------------------------------------


def test_an_annotation_without_a_file_has_no_empty_properties(
    capsys: pytest.CaptureFixture[str],
) -> None:
    annotate_error("bad input\n  hint: fix it", title="opk-sign")
    assert capsys.readouterr().out == "::error title=opk-sign::bad input%0A  hint: fix it\n"


def test_an_annotation_at_a_file_and_line(capsys: pytest.CaptureFixture[str]) -> None:
    annotate_error("not JSON", title="opk-sign: predicate", file="out/sbom.json", line=3)
    assert capsys.readouterr().out == (
        "::error file=out/sbom.json,line=3,title=opk-sign%3A predicate::not JSON\n"
    )


def test_run_main_prints_one_annotation_without_empty_properties(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def run(env: Mapping[str, str]) -> int:
        raise UsageError("the 'image' input is required", hint="set `with: image: …`")

    assert run_main(run, title="opk-sign") == EXIT_USAGE
    assert capsys.readouterr().out == (
        "::error title=opk-sign::the 'image' input is required%0A  hint: set `with: image: …`\n"
    )


def _toolkit_annotation_calls(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "core"
            and node.attr in {"error", "warning", "notice", "set_failed"}
        ):
            yield f"{path.name}:{node.lineno}: core.{node.attr}"


def test_the_actions_never_annotate_through_the_toolkit() -> None:
    # actions-toolkit's core.error writes every property, empty ones too:
    # ``::error title=t,file=,line=,endLine=,col=,endColumn=::m``. Annotations go through
    # runner.annotate_error / report.error_annotation, which leave them out.
    found = [
        call for path in (SRC / "actions").glob("*.py") for call in _toolkit_annotation_calls(path)
    ]
    assert found == []


# --- the action's words ---------------------------------------------------------------------------


def test_vocabulary_replaces_whole_phrases_longest_first() -> None:
    words = Vocabulary(
        {
            "--policy FILE": "the policy-file input",
            "--policy": "the policy-file input",
            "--repository": "the repository input",
            "with --insecure-registry {} or": "with `HOSTS: {}` or",
        }
    )
    assert words("give --policy FILE or --repository, not --policy") == (
        "give the policy-file input or the repository input, not the policy-file input"
    )
    assert words("name it with --insecure-registry reg.example:5000 or else") == (
        "name it with `HOSTS: reg.example:5000` or else"
    )


@pytest.mark.parametrize(
    "text",
    [
        "the 'repository' input looks like a command-line flag: '--policy=/etc/passwd'",
        'the value "--policy"',
        "--policy-file and --repository-regex are other flags",
        "ghcr.io/o/my--policy:v1",
        "--policy=x",
    ],
)
def test_vocabulary_leaves_values_names_and_other_flags_alone(text: str) -> None:
    words = Vocabulary({"--policy": "the policy-file input", "--repository": "the repo input"})
    assert words(text) == text


def test_run_main_reports_library_errors_in_the_actions_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from opk_sign.verify.options import no_policy_error

    def run(env: Mapping[str, str]) -> int:
        raise no_policy_error(trust_repository=True)

    assert run_main(run, title="opk-sign verify", vocabulary=verify_action.WORDS) == EXIT_USAGE
    (line,) = capsys.readouterr().out.splitlines()
    assert "the input `repository: octo-org/app`" in line and "the policy-file input" in line
    assert "--" not in line


def test_the_verify_action_without_a_policy_names_its_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    variables = {
        "INPUT_IMAGES": "ghcr.io/octo-org/app:v1",
        "GITHUB_WORKSPACE": str(tmp_path),
        "OPK_SIGN_TRUST_DIR": str(tmp_path / "no-trust"),
    }
    with mock.patch.dict(os.environ, variables, clear=True):
        assert verify_action.main() == EXIT_USAGE
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("::error title=opk-sign verify::no identity policy")
    assert "repository: octo-org/app" in line and "policy-file input" in line
    assert "--repository" not in line and "--policy" not in line


def test_the_verify_action_refusing_both_policies_names_its_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "policy.yml").write_text("repository: octo-org/app\n")
    variables = {
        "INPUT_IMAGES": "ghcr.io/octo-org/app:v1",
        "INPUT_POLICY-FILE": "policy.yml",
        "INPUT_REPOSITORY": "octo-org/app",
        "INPUT_REF-TYPE": "tag",
        "GITHUB_WORKSPACE": str(tmp_path),
    }
    with mock.patch.dict(os.environ, variables, clear=True):
        assert verify_action.main() == EXIT_USAGE
    (line,) = capsys.readouterr().out.splitlines()
    assert "as the policy-file input or as policy inputs, not both" in line
    assert "policy inputs also given: the repository input, the ref-type input" in line
    assert "--" not in line


def test_the_signing_action_names_its_inputs_in_library_hints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import requests

    from opk_sign.trust.tsa import request_timestamp

    session = mock.Mock(spec=requests.Session)
    session.post.side_effect = requests.ConnectionError("connection refused")

    def run(env: Mapping[str, str]) -> int:
        request_timestamp("https://tsa.example/", b"signature", session=session)
        return 0

    assert run_main(run, title="opk-sign", vocabulary=sign_action.WORDS) != 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.endswith(
        "%0A  hint: check the TSA URL (the timestamp-url input), or sign without timestamps"
        ' (`timestamp-url: ""`)'
    )
    assert "--" not in line and "OPK_SIGN_TIMESTAMP_URL" not in line


# Flags library messages name that neither action can make them say: the actions pass no such
# option (the verify action takes the default expiry, no platform, bundle, JWKS archive or TSA
# certificates), or they belong to `opk-sign trust` commands the actions never run.
UNREACHABLE: frozenset[str] = frozenset(
    {
        "--bundle",
        "--expiry-policy",
        "--platform",
        "--jwks-archive",
        "--tsa-certs",
        "--root",
        "--url",
        "--keys-dir",
        "--force",
        # An offline kit's verify command: a CLI command to run, whichever tool wrote the kit.
        "--from-dir",
        # Batch tuning of `opk-sign verify`; the actions verify with the library's defaults.
        "--workers",
        # `opk-sign log monitor` (tlog/monitor.py, tlog/reader.py), which no action runs; the
        # monitor workflow (.github/workflows/monitor.yml) runs the CLI.
        "--state",
        "--log-url",
        "--expect-workflow",
        "--owner",
    }
)
#: Verification flags: the signing action never verifies.
VERIFY_ONLY: frozenset[str] = frozenset(
    {f"--{name}" for name in policy_field_names()}
    | {"--policy", "--attestation", "--signed-repository", "--tlog-keys", "--require-tlog"}
)
#: Signing flags: the verify action never signs (nor writes a kit: --dir).
SIGN_ONLY: frozenset[str] = frozenset(
    {"--timestamp-url", "--no-timestamp", "--no-provenance", "--dir", "--tlog", "--tlog-url"}
)
FLAG = re.compile(r"(?<![\w'\"=-])--[a-z][a-z0-9-]*")


def _library_texts() -> Iterator[tuple[str, str]]:
    """Every string literal of the library that could be (part of) a message, docstrings aside;
    the front ends (cli, the pr-check command, the actions themselves) and dev tools left out."""
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.split("/")[0] in {"cli", "prcheck", "actions", "_dev"}:
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and FLAG.search(node.value)
            ):
                yield f"{rel}:{node.lineno}", node.value


@pytest.mark.parametrize(
    ("words", "elsewhere"),
    [(sign_action.WORDS, VERIFY_ONLY), (verify_action.WORDS, SIGN_ONLY)],
    ids=["sign", "verify"],
)
def test_every_flag_library_messages_name_is_in_the_actions_words(
    words: Vocabulary, elsewhere: frozenset[str]
) -> None:
    left = {
        f"{where}: {flag}"
        for where, text in _library_texts()
        for flag in FLAG.findall(words(text))
        if flag not in UNREACHABLE | elsewhere
    }
    # A new flag in a library message: add it to the action's WORDS (what the action calls it),
    # or to UNREACHABLE with the reason no action run can show that message.
    assert left == set()


# --- file inputs ----------------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "workspace"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "policy.yml").write_text("repository: octo-org/app\n")
    (tmp_path / "secret.json").write_text("{}")
    (root / "out").symlink_to(tmp_path / "secret.json")
    (root / "outdir").symlink_to(tmp_path)
    (root / "in").symlink_to(root / "sub" / "policy.yml")
    (root / "loop").symlink_to(root / "loop")
    return root


@pytest.mark.parametrize("value", ["sub/policy.yml", "./sub/../sub/policy.yml", "in"])
def test_a_file_in_the_workspace_is_taken_at_its_real_path(workspace: Path, value: str) -> None:
    env = {"GITHUB_WORKSPACE": str(workspace)}
    assert workspace_path("policy-file", value, env) == workspace / "sub" / "policy.yml"
    absolute = str(workspace / value)
    assert workspace_path("policy-file", absolute, env) == workspace / "sub" / "policy.yml"


def test_the_workspace_itself_may_be_reached_through_a_symlink(
    workspace: Path, tmp_path: Path
) -> None:
    (tmp_path / "ws-link").symlink_to(workspace)
    got = workspace_path("predicate", "in", {"GITHUB_WORKSPACE": str(tmp_path / "ws-link")})
    assert got == workspace / "sub" / "policy.yml"


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("/etc/passwd", "is outside it"),
        ("../secret.json", "is outside it"),
        ("sub/../../secret.json", "is outside it"),
        ("nothing/../../secret.json", "is outside it"),
        ("out", "is outside it"),
        ("outdir/secret.json", "is outside it"),
        ("missing.json", "does not exist"),
        ("sub", "is not a regular file"),
        ("loop", "'predicate' input"),
    ],
)
def test_a_file_input_leading_out_of_the_workspace_is_refused(
    workspace: Path, tmp_path: Path, value: str, needle: str
) -> None:
    with pytest.raises(UsageError) as caught:
        workspace_path("predicate", value, {"GITHUB_WORKSPACE": str(workspace)})
    assert caught.value.exit_code == EXIT_USAGE
    assert "the 'predicate' input" in caught.value.message and needle in caught.value.message
    assert str(tmp_path / "secret.json") not in (caught.value.hint or "")


def test_a_symlink_out_of_the_workspace_says_where_it_leads(
    workspace: Path, tmp_path: Path
) -> None:
    with pytest.raises(UsageError) as caught:
        workspace_path("policy-file", "out", {"GITHUB_WORKSPACE": str(workspace)})
    assert caught.value.message == (
        "the 'policy-file' input must name a file in the workspace: 'out' is outside it"
        f" (it leads to {tmp_path / 'secret.json'})"
    )


def test_without_a_runner_the_workspace_is_the_current_directory(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(workspace / "sub")
    assert workspace_path("predicate", "policy.yml", {}) == workspace / "sub" / "policy.yml"
    with pytest.raises(UsageError, match="outside"):
        workspace_path("predicate", "../../secret.json", {})


def test_every_file_input_of_both_actions_goes_through_workspace_path() -> None:
    # The one place: neither action builds a path from an input any other way.
    for name, inputs in (("sign.py", ["predicate"]), ("verify.py", ["policy-file"])):
        text = (SRC / "actions" / name).read_text()
        for input_name in inputs:
            assert f'runner.workspace_path("{input_name}"' in text
        assert "Path(inputs." not in text and "Path(env" not in text
    assert 'runner.workspace_dir("bundle-dir"' in (SRC / "actions" / "sign.py").read_text()
    assert runner.workspace_path is workspace_path


def test_a_directory_input_is_confined_to_the_workspace(workspace: Path, tmp_path: Path) -> None:
    env = {"GITHUB_WORKSPACE": str(workspace)}
    assert runner.workspace_dir("bundle-dir", ".opk-sign", env) == (
        workspace,
        workspace / ".opk-sign",
    )
    for escape in ("..", "/tmp", "sub/../../x"):
        with pytest.raises(UsageError, match="must name a directory in the workspace"):
            runner.workspace_dir("bundle-dir", escape, env)
    (workspace / "link").symlink_to(tmp_path)
    with pytest.raises(UsageError, match="outside"):
        runner.workspace_dir("bundle-dir", "link/kits", env)
