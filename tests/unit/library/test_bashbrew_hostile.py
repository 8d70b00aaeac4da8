"""A library file arrives in a pull request: a hostile one of the largest size allowed is parsed or
refused in well under a second (red-team F4: the Maintainers pattern backtracked quadratically,
~hours for 1 MiB; continuation lines were joined quadratically too)."""

from __future__ import annotations

import time

import pytest

from opk_sign.errors import UsageError
from opk_sign.library.bashbrew import MAX_BYTES, MAX_MAINTAINER_CHARS, parse_library

TAIL = "\n\nTags: latest\nGitRepo: https://github.com/a/b\nGitCommit: " + "0" * 40 + "\n"


def _sized(head: str, unit: str, end: str = "") -> str:
    """``head``, ``unit`` repeated, ``end``, then an entry: just under MAX_BYTES in all."""
    room = MAX_BYTES - len(head) - len(end) - len(TAIL)
    return head + unit * (room // len(unit)) + end + TAIL


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        # The backtracking shapes: an email with an '@' at every other character, unclosed,
        # or closed but followed by something the pattern cannot take.
        (_sized("Maintainers: x <", "b@"), "is not 'Name"),
        (_sized("Maintainers: x <", "b@", " >"), "is not 'Name"),
        (_sized("Maintainers: x ", "<b@b> ", "(@x)"), "is not 'Name"),
        # ~350 000 continuation lines of one field; a million blank lines.
        (_sized("Maintainers: x (@x)\n", " a\n"), "is not 'Name"),
        (_sized("Maintainers: x (@x)\n", "\n"), None),
        # Many maintainers, each fine.
        (_sized("Maintainers: x (@x)", ", x <a@b> (@y)"), None),
    ],
    ids=["email-unclosed", "email-space", "many-angles", "continuations", "blank", "maintainers"],
)
def test_a_hostile_file_of_the_largest_size_is_quick(text: str, refusal: str | None) -> None:
    data = text.encode()
    assert MAX_BYTES - 64 <= len(data) <= MAX_BYTES
    started = time.process_time()  # this process's CPU: other tests on the machine do not count
    if refusal is None:
        parse_library(data)
    else:
        with pytest.raises(UsageError, match=refusal) as refused:
            parse_library(data)
        assert len(refused.value.message) < 400  # the maintainer is quoted clipped
    assert time.process_time() - started < 1.0


def test_a_maintainer_is_short() -> None:
    name = "n" * (MAX_MAINTAINER_CHARS - len(" (@x)"))
    assert parse_library(f"Maintainers: {name} (@x){TAIL}").maintainers == (f"{name} (@x)",)
    with pytest.raises(UsageError, match=f"at most {MAX_MAINTAINER_CHARS} characters"):
        parse_library(f"Maintainers: n{name} (@x){TAIL}")


@pytest.mark.parametrize(
    ("maintainer", "ok"),
    [
        ("Tianon Gravi <admwiggin@gmail.com> (@tianon)", True),
        ("Joseph Ferguson (@yosifkit)", True),
        ("A <a@b@c> (@a)", True),
        ("A <@b> (@a)", False),
        ("A <b@> (@a)", False),
        ("A <b> (@a)", False),
        ("A <b @c> (@a)", False),
        ("A <<b@c> (@a)", False),
        ("A (@a) (@b)", False),
        ("<b@c> (@a)", False),
        ("A (@)", False),
        ("A (@" + "a" * 40 + ")", False),
        ("A (@a_b)", False),
        ("A(@a)", False),
    ],
)
def test_the_maintainer_shape_is_unchanged(maintainer: str, ok: bool) -> None:
    text = f"Maintainers: {maintainer}{TAIL}"
    if ok:
        assert parse_library(text).maintainers == (maintainer,)
    else:
        with pytest.raises(UsageError, match="is not 'Name"):
            parse_library(text)


def test_text_over_the_limit_is_refused_too() -> None:
    with pytest.raises(UsageError, match="larger than"):
        parse_library("#" * (MAX_BYTES + 1))
