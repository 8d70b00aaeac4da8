"""A policy file is read strictly (docs/verify.md): what a reviewer reads is what the verifier
honours, and anything else is a usage error (exit 2) naming the file, the line and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from opk_sign.cli.main import main
from opk_sign.errors import EXIT_USAGE, UsageError
from opk_sign.policy import AllOf, SourceDict, policy_from_document
from opk_sign.verify.options import build_policy, load_policy_file

DIGEST = "sha256:" + "ab" * 32
CLAIMS = {
    "iss": "https://token.actions.githubusercontent.com",
    "repository": "octo-org/app",
    "repository_id": "123456",
    "ref": "refs/heads/main",
}


def policy(tmp_path: Path, text: str, name: str = "policy.yml") -> AllOf:
    file = tmp_path / name
    file.write_bytes(text.encode())  # as written: no newline translation
    built = build_policy(policy_file=file, issuer=CLAIMS["iss"])
    assert built is not None
    return built


def refused(tmp_path: Path, text: str, name: str = "policy.yml") -> str:
    with pytest.raises(UsageError) as caught:
        policy(tmp_path, text, name)
    assert caught.value.exit_code == EXIT_USAGE
    message = caught.value.message
    assert f"policy file {tmp_path / name}" in message
    return message


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        pytest.param(
            "repository: octo-org/app\nref: refs/heads/main\nrepository: evil/app\n",
            3,
            "'repository' appears twice (first on line 1)",
            id="duplicate-yaml",
        ),
        pytest.param(
            '{\n  "repository": "octo-org/app",\n  "repository": "evil/app"\n}\n',
            3,
            "'repository' appears twice (first on line 2)",
            id="duplicate-json",
        ),
        pytest.param(
            "repository: octo-org/app\nany-of:\n  - ref: refs/heads/main\n"
            "    event: push\n    ref: refs/heads/evil\n",
            5,
            "'any-of[0].ref' appears twice (first on line 3)",
            id="duplicate-in-any-of",
        ),
        pytest.param(
            "repository: octo-org/app\nrepositry: evil/app\n",
            2,
            "unknown policy field 'repositry'",
            id="unknown-key",
        ),
        pytest.param(
            "repository: octo-org/app\nany-of:\n  - ref: refs/heads/main\n  - reff: x\n",
            4,
            "(any-of[1]): unknown policy field 'reff'",
            id="unknown-nested-key",
        ),
        pytest.param("repository: a/b\n1: x\n", 2, "key '1' is read as a number", id="int-key"),
        pytest.param(
            "repository: a/b\ntrue: x\n", 2, "key 'true' is read as a boolean", id="bool-key"
        ),
        pytest.param("repository: a/b\nnull: x\n", 2, "key 'null' is read as null", id="null-key"),
        pytest.param(
            "repository:\n  - octo-org/app\n",
            1,
            "'repository' must be a string, got a list",
            id="list-value",
        ),
        pytest.param(
            "repository: octo-org/app\nref:\n", 2, "'ref' must be a string, got null", id="null"
        ),
        pytest.param(
            "repository: octo-org/app\nref-type: on\n",
            2,
            "'ref-type' must be a string, got a boolean",
            id="yaml-1.1-boolean",
        ),
        pytest.param(
            "repository: octo-org/app\nany-of:\n  ref: refs/heads/main\n",
            2,
            "'any-of' must be a non-empty list of policies, got a mapping",
            id="any-of-not-a-list",
        ),
        pytest.param(
            "repository: octo-org/app\nany-of: []\n",
            2,
            "'any-of' must be a non-empty list",
            id="any-of-empty",
        ),
        pytest.param(
            "repository: octo-org/app\nall-of:\n  - event: push\n  - refs/heads/main\n",
            4,
            "(all-of[1]): expected a mapping of policy fields, got a string",
            id="all-of-item-not-a-mapping",
        ),
        pytest.param(
            "repository: &repo octo-org/app\nowner: x\n",
            1,
            "key 'repository' defines the anchor &repo",
            id="anchor",
        ),
        pytest.param(
            "repository: octo-org/app\nowner: *repo\n", 2, "key 'owner' uses the alias", id="alias"
        ),
        pytest.param(
            "repository: octo-org/app\n<<: {ref: refs/heads/main}\n",
            2,
            "key '<<': merge keys are not allowed",
            id="merge-key",
        ),
        pytest.param(
            "repository: !!str octo-org/app\n",
            1,
            "key 'repository' has the tag tag:yaml.org,2002:str",
            id="tag",
        ),
        pytest.param(
            "repository: octo-org/app\nref: !env REF\n",
            2,
            "key 'ref' has the tag !env",
            id="own-tag",
        ),
        pytest.param(
            "repository: octo-org/app\n---\nrepository: evil/app\n",
            2,
            "a second document starts here",
            id="two-documents",
        ),
        pytest.param(
            "repository: a/b\nall-of:\n"
            + "".join(f"{'  ' * i}- all-of:\n" for i in range(1, 10))
            + "  " * 10
            + "- ref: x\n",
            10,
            "key 'all-of[0]" + ".all-of[0]" * 7 + "' is nested deeper than 16 levels",
            id="too-deep",
        ),
        pytest.param(
            "repository: a/b\nx: " + "[" * 10_000 + "]" * 10_000 + "\n",
            2,
            "key 'x" + "[0]" * 15 + "' is nested deeper than 16 levels",
            id="too-deep-flow",
        ),
        pytest.param(
            "repository: a/b\nany-of:\n" + "  - ref: x\n" * 300,
            130,
            "key 'any-of[127]': more than 256 keys and items",
            id="too-many-entries",
        ),
        pytest.param(
            "repository: a/b\nref-regex: '('\n",
            2,
            "invalid regular expression for 'ref'",
            id="bad-regex",
        ),
        pytest.param(
            "repository: a/b\nref: ''\n", 2, "the policy for 'ref' is empty", id="empty-value"
        ),
        pytest.param(
            "repository: a/b\nissuer-regex: '.*'\n",
            2,
            "unknown policy field 'issuer-regex'",
            id="issuer-regex",
        ),
        pytest.param(
            "repository: a/b\nref: x\0\n", 2, "special characters are not allowed", id="nul"
        ),
        pytest.param(
            "repository: octo-org/app\n# reviewed\x85repository: evil/app\n",
            2,
            "U+0085 (a line break to YAML, not to most viewers)",
            id="next-line-hides-a-key-in-a-comment",
        ),
        pytest.param(
            "repository: octo-org/app\nref: main\u2028owner: evil\n",
            2,
            "U+2028",
            id="line-separator",
        ),
        pytest.param(
            "repository: octo-org/app\nref: x\rowner: evil\n",
            2,
            "U+000D",
            id="lone-carriage-return",
        ),
        pytest.param(
            "repository: octo-org/app # \u202e ppa/live\n",
            1,
            "U+202E (a bidirectional control)",
            id="trojan-source",
        ),
        pytest.param(
            '{"repository": "octo-org/app",\n "ref": "\\ud83d"}\n',
            2,
            "key 'ref' holds a \\u escape of half a character",
            id="surrogate-escape",
        ),
    ],
)
def test_a_policy_file_is_refused_naming_line_and_key(
    tmp_path: Path, text: str, line: int, key: str
) -> None:
    message = refused(tmp_path, text)
    assert f", line {line}" in message and key in message, message


def test_a_file_too_large_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    message = refused(tmp_path, "repository: octo-org/app\n" + "# padding\n" * 7000)
    assert "larger than 65536 bytes" in message


def test_a_file_not_utf8_is_refused_naming_the_line(tmp_path: Path) -> None:
    file = tmp_path / "policy.yml"
    file.write_bytes(b"repository: octo-org/app\nref: refs/heads/\xff\n")
    with pytest.raises(UsageError, match=r"policy\.yml, line 2: not UTF-8"):
        build_policy(policy_file=file)


def test_an_empty_file_or_a_list_is_refused(tmp_path: Path) -> None:
    assert "the file is empty" in refused(tmp_path, "# nothing\n")
    assert "line 2: expected a mapping of policy fields" in refused(tmp_path, "\n- a list\n")


def test_a_tab_indented_json_file_says_why(tmp_path: Path) -> None:
    file = tmp_path / "policy.json"
    file.write_text('{\n\t"repository": "octo-org/app"\n}\n')
    with pytest.raises(UsageError) as caught:
        build_policy(policy_file=file)
    assert "line 2" in caught.value.message and "tabs" in (caught.value.hint or "")


def test_the_cli_exits_2_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "policy.yml"
    file.write_text("repository: octo-org/app\nrepository: evil/app\n")
    assert main(["verify", f"registry.example/app@{DIGEST}", "--policy", str(file)]) == 2
    err = capsys.readouterr().err
    assert "line 2: key 'repository' appears twice" in err and "Traceback" not in err


def test_crlf_line_endings_are_read(tmp_path: Path) -> None:
    built = policy(tmp_path, "repository: octo-org/app\r\nref: refs/heads/main\r\n")
    assert "ref == 'refs/heads/main'" in built.describe()


def test_a_normal_file_is_honoured_whole(tmp_path: Path) -> None:
    built = policy(
        tmp_path,
        "# who may sign\n"
        "repository: octo-org/app\n"
        "repository-id: 123456\n"
        'signer-workflow-regex: "octo-org/app/.github/workflows/release.yml@refs/.*"\n'
        "any-of:\n"
        "  - ref: refs/heads/main\n"
        "  - ref-type: tag\n"
        "    event: release\n",
    )
    assert "repository_id == '123456'" in built.describe()
    assert "ref == 'refs/heads/main' or (ref_type == 'tag' and event_name == 'release')" in (
        built.describe()
    )


@pytest.mark.parametrize(
    ("written", "read"),
    [("123456", "123456"), ("0123456", "0123456"), ("1_000", "1_000"), ('"123456"', "123456")],
)
def test_numbers_are_read_as_the_text_written(tmp_path: Path, written: str, read: str) -> None:
    file = tmp_path / "policy.yml"
    file.write_text(f"repository-id: {written}\nsha: {written}\n")
    document = load_policy_file(file)
    assert document == {"repository-id": read, "sha": read}
    assert f"repository_id == {read!r}" in policy_from_document(document).describe()


def test_json_numbers_and_lines_are_kept(tmp_path: Path) -> None:
    file = tmp_path / "policy.json"
    huge = "9" * 5000  # beyond int()'s 4300 digits: kept as text, never converted
    file.write_text('{"repository-id": 123456,\n "owner-id": ' + huge + "}\n")
    document = load_policy_file(file)
    assert isinstance(document, SourceDict) and document.origin is not None
    assert document == {"repository-id": "123456", "owner-id": huge}
    assert dict(document.origin.lines) == {"repository-id": 1, "owner-id": 2}
    assert json.loads(json.dumps(document)) == document  # publishable as the trust repo's JSON


def test_plain_documents_still_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"^policy\.any-of\[0\]: unknown policy field 'x'"):
        policy_from_document({"repository": "a/b", "any-of": [{"x": "y"}]})
    with pytest.raises(UsageError, match="'owner-id' must be a string, got a number"):
        policy_from_document({"repository": "a/b", "owner-id": 123})


@pytest.mark.parametrize(
    "value",
    ['"octo-org/octo-repo\\x7c[^A-Z].*"', '"octo-org/app\\u007c.*"', '"octo-org/a\\tb"'],
)
def test_double_quoted_escapes_are_refused(tmp_path: Path, value: str) -> None:
    # A reviewer reads \x7c as a regular expression's literal "|"; YAML decodes it first.
    path = tmp_path / "policy.yml"
    path.write_text(f"ref: refs/heads/main\nrepository-regex: {value}\n")
    with pytest.raises(UsageError) as caught:
        load_policy_file(path)
    assert "line 2" in caught.value.message and "escape" in caught.value.message


def test_json_escapes_of_backslash_quote_and_slash_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text('{"repository-regex": "octo-org\\/app\\\\.x\\"y"}\n')
    assert load_policy_file(path)["repository-regex"] == 'octo-org/app\\.x"y'
