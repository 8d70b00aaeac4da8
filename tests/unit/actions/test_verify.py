"""The verify action's pure parts: inputs, the options they make, outputs, annotations (GitHub's
escaping), the step summary; and that the action, pr-check and verify share one set of options."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from opk_sign.actions import verify as verify_action
from opk_sign.actions.report import (
    error_annotation,
    escape_data,
    escape_property,
    md_text,
    parse_multiline,
    untrusted_block,
    workflow_command,
)
from opk_sign.actions.verify import (
    VerifyActionInputs,
    annotation_lines,
    exit_code,
    in_action_words,
    outputs,
    summary_markdown,
    verification,
)
from opk_sign.cli.main import build_parser
from opk_sign.errors import EXIT_NO_SIGNATURES, EXIT_OK, EXIT_POLICY_MISMATCH, UsageError
from opk_sign.pktoken import GITHUB_ISSUER
from opk_sign.policy import policy_field_names
from opk_sign.verify.options import VerifyOptions
from opk_sign.verify.outcome import BundleCheck, ImageResult, ManifestResult, Outcome

ROOT = Path(__file__).resolve().parents[3]
DIGEST = "sha256:" + "ab" * 32
IMAGE = "ghcr.io/octo-org/app:v1"


def read_inputs(variables: dict[str, str]) -> VerifyActionInputs:
    """The action's inputs as the runner would set them (only these variables)."""
    with mock.patch.dict(os.environ, variables, clear=True):
        return verify_action.read_inputs()


def env(**inputs: str) -> dict[str, str]:
    return {f"INPUT_{name.upper()}": value for name, value in inputs.items()}


def with_policy(**inputs: str) -> dict[str, str]:
    return env(images=IMAGE, repository="octo-org/app", **inputs)


# --- inputs ---------------------------------------------------------------------------------------


def test_inputs_are_read_from_the_runners_variables() -> None:
    got = read_inputs(
        {
            "INPUT_IMAGES": f"# fleet\n{IMAGE}\n\n  ghcr.io/octo-org/b@{DIGEST}  # pinned\n",
            "INPUT_REPOSITORY": " octo-org/app ",
            "INPUT_REF-REGEX": "refs/tags/v.*",
            "INPUT_SIGNER-WORKFLOW": "",
            "INPUT_ATTESTATION": "https://slsa.dev/provenance/v1\n",
            "INPUT_FAIL-ON-ERROR": "false",
            "INPUT_ISSUER": "https://issuer.example",
        }
    )
    assert got.images == (IMAGE, f"ghcr.io/octo-org/b@{DIGEST}")
    assert dict(got.policy) == {"repository": "octo-org/app", "ref-regex": "refs/tags/v.*"}
    assert got.attestations == ("https://slsa.dev/provenance/v1",)
    assert got.fail_on_error is False
    assert got.issuer == "https://issuer.example"


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        ({"images": ""}, "'images' input is required"),
        ({"images": "# only a comment\n"}, "'images' input is required"),
        ({"images": f"{IMAGE}\n--help"}, "'images' input looks like a command-line flag"),
        ({"images": f"{IMAGE} other:1"}, "one value per line"),
        ({"images": IMAGE, "repository": "--policy=/etc/passwd"}, "looks like a command-line"),
        ({"images": IMAGE, "policy-file": "-"}, "'policy-file' input looks like"),
        ({"images": IMAGE, "issuer": "-x"}, "'issuer' input looks like"),
        ({"images": IMAGE, "attestation": "-x"}, "'attestation' input looks like"),
        ({"images": IMAGE, "owner": "a\nb"}, "must be a single line"),
        ({"images": IMAGE, "fail-on-error": "yes"}, "must be true or false"),
    ],
)
def test_bad_inputs_are_refused(inputs: dict[str, str], needle: str) -> None:
    with pytest.raises(UsageError) as caught:
        read_inputs(env(**inputs))
    assert needle in caught.value.message


def test_fail_on_error_defaults_to_true() -> None:
    assert read_inputs(with_policy()).fail_on_error is True
    assert read_inputs(with_policy(**{"fail-on-error": "TRUE"})).fail_on_error is True


def test_inputs_become_the_verify_commands_options() -> None:
    inputs = read_inputs(
        with_policy(
            **{"ref-regex": "refs/tags/.*", "attestation": "https://slsa.dev/provenance/v1"}
        )
    )
    options = verification(inputs, {})
    assert isinstance(options, VerifyOptions)
    assert options.issuers == frozenset({GITHUB_ISSUER})
    assert options.attestations == ("https://slsa.dev/provenance/v1",)
    described = options.policy.describe()
    assert "repository == 'octo-org/app'" in described and "ref =~ 'refs/tags/.*'" in described
    assert f"iss == '{GITHUB_ISSUER}'" in described


def test_the_signed_repository_input_names_where_copies_were_signed() -> None:
    names = "ghcr.io/octo-org/app\n# the mirror's source\nalpine\n"
    inputs = read_inputs(with_policy(**{"signed-repository": names}))
    assert inputs.signed_repositories == ("ghcr.io/octo-org/app", "alpine")
    options = verification(inputs, {})
    assert isinstance(options, VerifyOptions)
    assert options.signed_repositories == ("ghcr.io/octo-org/app", "docker.io/library/alpine")
    with pytest.raises(UsageError, match="names a tag or digest"):
        verification(read_inputs(with_policy(**{"signed-repository": "ghcr.io/o/app:v1"})), {})


def _issuers(inputs: VerifyActionInputs, environ: dict[str, str]) -> frozenset[str]:
    options = verification(inputs, environ)
    assert isinstance(options, VerifyOptions)
    return options.issuers


def test_issuer_from_the_input_else_the_environment() -> None:
    inputs = read_inputs(with_policy())
    assert _issuers(inputs, {}) == {GITHUB_ISSUER}
    emulator = {"OPK_SIGN_OIDC_ISSUER": "http://127.0.0.1:9/"}
    assert _issuers(inputs, emulator) == {"http://127.0.0.1:9/"}
    mine = read_inputs(with_policy(issuer="https://ghes.example/_services/token"))
    assert _issuers(mine, emulator) == {"https://ghes.example/_services/token"}


def test_policy_file_is_read_from_the_workspace(tmp_path: Path) -> None:
    (tmp_path / "policy.yml").write_text("repository: octo-org/app\nref-type: tag\n")
    inputs = read_inputs(env(images=IMAGE, **{"policy-file": "policy.yml"}))
    options = verification(inputs, {"GITHUB_WORKSPACE": str(tmp_path)})
    assert isinstance(options, VerifyOptions)
    assert "ref_type == 'tag'" in options.policy.describe()


@pytest.mark.parametrize(
    ("inputs", "needle"),
    [
        (env(images=IMAGE), "no identity policy"),
        (env(images=IMAGE, issuer=GITHUB_ISSUER), "no identity policy"),
        (env(images=IMAGE, **{"owner-regex": "("}), "invalid regular expression"),
    ],
)
def test_a_policy_that_would_accept_anyone_is_refused(inputs: dict[str, str], needle: str) -> None:
    # (tests/conftest.py points the trust repository at an empty directory: no mapping helps.)
    with pytest.raises(UsageError) as caught:
        verification(read_inputs(inputs), {})
    assert needle in caught.value.diagnostics()


def test_a_policy_file_and_policy_inputs_are_not_both_taken(tmp_path: Path) -> None:
    (tmp_path / "p.yml").write_text("repository: octo-org/app\n")
    with pytest.raises(UsageError) as caught:
        verification(
            read_inputs(with_policy(**{"policy-file": "p.yml"})),
            {"GITHUB_WORKSPACE": str(tmp_path)},
        )
    assert "not both" in caught.value.message


@pytest.mark.parametrize("value", ["/etc/passwd", "../outside.yml", "link.yml"])
def test_the_policy_file_must_be_in_the_workspace(tmp_path: Path, value: str) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "outside.yml").write_text("repository: octo-org/app\n")
    (workspace / "link.yml").symlink_to(tmp_path / "outside.yml")
    inputs = read_inputs(env(images=IMAGE, **{"policy-file": value}))
    with pytest.raises(UsageError) as caught:
        verification(inputs, {"GITHUB_WORKSPACE": str(workspace)})
    assert caught.value.message.startswith(
        f"the 'policy-file' input must name a file in the workspace: {value!r} is outside it"
    )


def test_messages_of_results_name_the_actions_inputs() -> None:
    result = ImageResult(
        IMAGE,
        Outcome.MISSING_ATTESTATION,
        "linux/amd64: signed, but no attestation of type https://x.example/t"
        " (required by --attestation)",
        IMAGE,
        DIGEST,
        (
            ManifestResult(
                DIGEST,
                "application/vnd.oci.image.manifest.v1+json",
                "linux/amd64",
                Outcome.MISSING_ATTESTATION,
                "signed, but no attestation (required by --attestation)",
            ),
        ),
    )
    worded = in_action_words(result)
    assert worded.message.endswith("(required by the attestation input)")
    assert worded.manifests[0].message.endswith("(required by the attestation input)")
    (line,) = annotation_lines([worded])
    assert "the attestation input" in line and "--attestation" not in line
    assert "--attestation" not in json.dumps(outputs([worded]))


# --- one set of options ---------------------------------------------------------------------------


def _dests(parser: argparse.ArgumentParser) -> set[str]:
    return {action.dest for action in parser._actions if action.dest != "help"}


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found: argparse.ArgumentParser = sub.choices[name]
    return found


VERIFY_ONLY = {
    *(
        "images",
        "images_from",
        "bundle",
        "from_dir",
        "output",
        "vsa",
        "jobs",
        "progress",
        "func",
        "workers",
    ),
}


def test_pr_check_takes_every_verification_option_of_verify() -> None:
    # Both build their verification from the same option groups (cli/options.py); a new option
    # missing from pr-check would break it at run time.
    verification_dests = _dests(_subparser("verify")) - VERIFY_ONLY
    assert verification_dests - _dests(_subparser("pr-check")) == set()


def test_cli_and_action_build_their_verification_through_verify_options() -> None:
    # No front end builds options by itself: each calls opk_sign.verify.options.
    src = ROOT / "src" / "opk_sign"
    for front in ("cli/options.py", "actions/verify.py"):
        assert "build_verify_options(" in (src / front).read_text()
    for path in src.rglob("*.py"):
        text = path.read_text()
        assert "VerifyOptions(" not in text or path.name == "options.py", path
        assert "options_namespace" not in text and "verification_parser" not in text, path


def test_the_action_metadata_declares_every_input_the_code_reads() -> None:
    metadata = yaml.safe_load((ROOT / "verify" / "action.yml").read_text())
    inputs: dict[str, Any] = metadata["inputs"]
    expected = {
        *("images", "policy-file", "attestation", "signed-repository", "fail-on-error"),
        "github-token",
    }
    assert set(inputs) == expected | set(policy_field_names())
    assert inputs["images"]["required"] is True
    assert all("default" in spec for name, spec in inputs.items() if name != "images")
    assert inputs["fail-on-error"]["default"] == "true"
    assert set(metadata["outputs"]) == {"verified", "results", "failed-images"}
    assert metadata["runs"] == {"using": "docker", "image": "../Dockerfile", "args": ["verify"]}


# --- workflow commands ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "data", "prop"),
    [
        ("plain", "plain", "plain"),
        ("100%", "100%25", "100%25"),
        ("a\nb", "a%0Ab", "a%0Ab"),
        ("a\r\nb", "a%0D%0Ab", "a%0D%0Ab"),
        ("host:5000/x", "host:5000/x", "host%3A5000/x"),
        ("a,b", "a,b", "a%2Cb"),
        ("%0A", "%250A", "%250A"),  # already-escaped text stays literal
        ("::error::x", "::error::x", "%3A%3Aerror%3A%3Ax"),
    ],
)
def test_escaping_follows_githubs_rules(text: str, data: str, prop: str) -> None:
    assert escape_data(text) == data
    assert escape_property(text) == prop


def test_workflow_command_leaves_out_empty_properties() -> None:
    assert workflow_command("error", "m") == "::error::m"
    assert workflow_command("error", "m", {"file": None, "line": "", "title": "t"}) == (
        "::error title=t::m"
    )
    assert error_annotation("m", title="T: x, y", file="a b/Dockerfile", line=3) == (
        "::error file=a b/Dockerfile,line=3,title=T%3A x%2C y::m"
    )


def test_long_messages_are_cut_in_annotations_only() -> None:
    line = error_annotation("x" * 10_000, title="t")
    assert len(line) < 4100 and line.endswith("…")


def test_untrusted_text_is_fenced_by_stop_commands() -> None:
    assert untrusted_block(["::add-mask::x"], "f00d") == [
        "::stop-commands::f00d",
        "::add-mask::x",
        "::f00d::",
    ]


def test_markdown_text_cannot_break_the_table_or_inject_markup() -> None:
    assert md_text("a|b\n<img src=x onerror=alert(1)>") == (
        "a&#124;b<br>&lt;img src=x onerror=alert(1)&gt;"
    )
    assert parse_multiline(" a \n\n# c\nb # d\n") == ["a", "b"]


# --- outputs, summary, exit code ------------------------------------------------------------------

CLAIMS = {
    "iss": GITHUB_ISSUER,
    "repository": "octo-org/app",
    "job_workflow_ref": "octo-org/app/.github/workflows/release.yml@refs/tags/v1",
    "ref": "refs/tags/v1",
}


def verified(image: str = IMAGE) -> ImageResult:
    check = BundleCheck("sha256:" + "ee" * 32, "signature", Outcome.VERIFIED, claims=CLAIMS)
    manifest = ManifestResult(
        DIGEST, "application/vnd.oci.image.manifest.v1+json", None, Outcome.VERIFIED, "ok", (check,)
    )
    return ImageResult(image, Outcome.VERIFIED, "verified", image, DIGEST, (manifest,))


def failed(image: str, outcome: Outcome, message: str) -> ImageResult:
    return ImageResult(image, outcome, message, image, DIGEST)


def test_outputs() -> None:
    good = outputs([verified()])
    assert good["verified"] == "true" and json.loads(good["failed-images"]) == []
    (doc,) = json.loads(good["results"])
    assert doc["image"] == IMAGE and doc["verified"] is True and doc["exitCode"] == 0
    assert doc["identity"]["repository"] == "octo-org/app"
    assert "bundles" not in doc["manifests"][0]
    bad = outputs([verified(), failed("x/y:1", Outcome.NO_SIGNATURES, "none")])
    assert bad["verified"] == "false" and json.loads(bad["failed-images"]) == ["x/y:1"]
    assert outputs([])["verified"] == "false"


def test_exit_code_is_the_worst_unless_told_not_to_fail() -> None:
    results = [
        verified(),
        failed("a/b:1", Outcome.POLICY_MISMATCH, "claim"),
        failed("c/d:1", Outcome.NO_SIGNATURES, "none"),
    ]
    assert exit_code(results, fail_on_error=True) == EXIT_POLICY_MISMATCH
    assert exit_code(results[2:], fail_on_error=True) == EXIT_NO_SIGNATURES
    assert exit_code(results, fail_on_error=False) == EXIT_OK
    assert exit_code([verified()], fail_on_error=True) == EXIT_OK


def test_annotation_per_failed_image() -> None:
    results = [verified(), failed("localhost:5000/a:1", Outcome.INVALID, "tampered\n  - x: bad")]
    assert annotation_lines(results) == [
        "::error title=opk-sign%3A localhost%3A5000/a%3A1 not verified (invalid)"
        "::localhost:5000/a:1: tampered%0A  - x: bad"
    ]


def test_summary_table_per_image_with_the_message_folded() -> None:
    results = [
        verified(),
        failed("ghcr.io/evil/x:1", Outcome.POLICY_MISMATCH, "claim 'repository' is '<evil>'\nmore"),
    ]
    text = summary_markdown(results, "iss == 'x' and repository == 'octo-org/app'")
    lines = text.splitlines()
    header = "| Image | Digest | Outcome | Signer repository | Signer workflow | Details |"
    assert header in lines
    rows = [line for line in lines if line.startswith("| <code>")]
    assert len(rows) == 2
    assert rows[0].startswith(f"| <code>{IMAGE}</code> | <code>sha256:abababababab…</code> |")
    assert "✅ verified" in rows[0] and "<code>octo-org/app</code>" in rows[0]
    assert f"<code>{CLAIMS['job_workflow_ref']}</code>" in rows[0]
    assert "❌ policy-mismatch (11)" in rows[1]
    assert (
        "<details><summary>claim &#x27;repository&#x27; is &#x27;&lt;evil&gt;&#x27;</summary>"
        in rows[1]
    )
    assert "<br>more<br>digest: " + DIGEST in rows[1]
    assert "**1 of 2 images verified**" in text
    assert "<details><summary>Identity policy</summary>" in text


def _unescape_property(text: str) -> str:
    # The runner's unescaping order (ActionCommand.UnescapeProperty).
    for escaped, char in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(escaped, char)
    return text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40), st.text(max_size=40))
def test_escaped_commands_stay_one_command_and_round_trip(value: str, message: str) -> None:
    line = error_annotation(message, title="t", file=value or None, line=1)
    assert "\n" not in line and "\r" not in line
    if value:
        prop = line.removeprefix("::error file=").split(",line=1,", 1)[0]
        assert ":" not in prop and "," not in prop
        assert _unescape_property(prop) == value
