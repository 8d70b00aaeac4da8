"""The bashbrew library-file parser: a real file (docker-library/official-images'
library/hello-world, tests/fixtures/library/README.md), the documented example, and every
malformation refused with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from opk_sign.errors import UsageError
from opk_sign.library.bashbrew import ARCH_PLATFORMS, parse_library

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "library" / "hello-world"
C1, C2 = "a" * 40, "b" * 40

GOOD = f"""\
# comment
Maintainers: John Smith <jsmith@example.com> (@example-jsmith),
             Anne Smith (@example-asmith)
GitRepo: https://github.com/example/docker-example.git
GitCommit: {C1}

Tags: 1.2.3, 1.2, 1, latest
Directory: 1

Tags: 2.0-rc1, 2.0-rc
SharedTags: rc
Architectures: amd64, arm64v8
GitRepo: https://github.com/example/docker-example-rc.git
GitFetch: refs/heads/2.0-pre-release
GitCommit: {C2}
arm64v8-Directory: 2/arm64
Directory: 2
"""


def test_a_real_library_file() -> None:
    library = parse_library(FIXTURE.read_bytes(), "hello-world")
    assert library.maintainers == (
        "Tianon Gravi <admwiggin@gmail.com> (@tianon)",
        "Joseph Ferguson <yosifkit@gmail.com> (@yosifkit)",
    )
    linux, windows = library.entries
    assert (linux.line, linux.tags, linux.shared_tags) == (8, ("linux",), ("latest",))
    assert len(linux.architectures) == 7
    assert linux.sources["i386"].commit == "c0f93c30814d7a2487648efc712dc031a89bac79"
    assert linux.sources["amd64"].directory == "amd64/hello-world"
    assert linux.sources["amd64"].repository == "https://github.com/docker-library/hello-world.git"
    assert windows.constraints == ("nanoserver",)
    plans = {plan.tag: plan for plan in library.tags()}
    assert list(plans) == ["linux", "latest", "nanoserver"]
    assert plans["latest"].lines == [8, 26]
    assert set(plans["latest"].platforms) == {ARCH_PLATFORMS[a] for a in linux.architectures} | {
        "windows/amd64"
    }


def test_the_documented_example_with_defaults_and_overrides() -> None:
    library = parse_library(GOOD)
    first, second = library.entries
    assert first.architectures == ("amd64",)  # bashbrew's default
    assert first.sources["amd64"].commit == C1 and first.sources["amd64"].directory == "1"
    assert second.sources["amd64"].fetch == "refs/heads/2.0-pre-release"
    assert second.sources["arm64v8"].directory == "2/arm64"
    assert second.sources["amd64"].directory == "2"
    assert [p.tag for p in library.tags()] == [
        "1.2.3",
        "1.2",
        "1",
        "latest",
        "2.0-rc1",
        "2.0-rc",
        "rc",
    ]


@pytest.mark.parametrize(
    ("old", "new", "line", "message"),
    [
        ("Directory: 1\n", "Dockerfile: 1\n", 8, "unknown field 'Dockerfile'"),
        ("Directory: 2\n", "Directory: 2\nGitCommit: " + C1 + "\n", 18, "given twice"),
        (f"GitCommit: {C2}", "GitCommit: deadbeef", 15, "not a full commit"),
        (
            "Architectures: amd64, arm64v8",
            "Architectures: amd64, sparc",
            12,
            "unknown architecture",
        ),
        ("arm64v8-Directory", "s390x-Directory", 16, "which the entry's Architectures omit"),
        ("Tags: 2.0-rc1, 2.0-rc", "Tags: 2.0-rc1, 1.2", 10, "already given by the entry at line 7"),
        ("SharedTags: rc", "SharedTags: latest", 10, "is a plain tag of the entry at line 7"),
        ("Directory: 1\n", "Directory: ../1\n", 8, "not a relative path"),
        ("GitFetch: refs/heads/2.0-pre-release", "GitFetch: main", 14, "GitFetch 'main'"),
        ("Directory: 1\n", "Directory 1\n", 8, "expected 'Field: value'"),
        ("Tags: 1.2.3, 1.2, 1, latest", "Tags: 1.2.3, 1.2, 1.2", 7, "lists a tag twice"),
        ("Tags: 1.2.3, 1.2, 1, latest", "Tags: 1.2.3, bad tag!", 7, "not a valid tag"),
        ("Anne Smith (@example-asmith)", "Anne Smith", 2, "is not 'Name <email> (@github)'"),
        ("Directory: 1\n", "Directory: 1\nBuilder: docker\n", 9, "unknown Builder"),
        ("Directory: 1\n", "Directory: 1\nMaintainers: X (@x)\n", 9, "global entry only"),
        (
            "GitRepo: https://github.com/example/docker-example.git",
            "GitRepo: file:///etc",
            4,
            "GitRepo",
        ),
        ("# comment\n", "Tags: nope\n", 1, "'Tags' is not allowed in the global entry"),
    ],
)
def test_malformed_files_are_refused_with_their_line(
    old: str, new: str, line: int, message: str
) -> None:
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    with pytest.raises(UsageError) as refused:
        parse_library(text, "library/example")
    assert refused.value.message.startswith(f"library/example, line {line}: "), refused.value
    assert message in refused.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        (f"GitRepo: https://x.example/a.git\nGitCommit: {C1}\n\nTags: 1\n", "needs 'Maintainers'"),
        ("Maintainers: A (@a)\n", "no entries"),
        ("Maintainers: A (@a)\n\nDirectory: x\n", "needs 'Tags'"),
        ("Maintainers: A (@a)\n\nTags: 1\n", "no GitRepo"),
        ("  continued\nMaintainers: A (@a)\n", "continuation line"),
        (b"Maintainers: A (@a)\n\xff\n".decode("latin-1"), "expected 'Field: value'"),
    ],
)
def test_incomplete_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(UsageError) as refused:
        parse_library(text)
    assert message in refused.value.message


def test_bytes_not_utf8_and_too_large() -> None:
    with pytest.raises(UsageError, match="line 2: not UTF-8"):
        parse_library(b"Maintainers: A (@a)\n\xff\n")
    with pytest.raises(UsageError, match="larger than"):
        parse_library(b"#" * (1024 * 1024 + 1))
