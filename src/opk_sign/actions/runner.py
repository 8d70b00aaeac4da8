"""The GitHub Actions runner contract, in one place for both actions, on actions-toolkit.

- Inputs arrive only as ``INPUT_*`` environment variables (``core.get_input``), never through a
  shell. A value that looks like a command-line flag is refused: values go to the library, never
  to a command line, and refusing them anyway means no input can ever be taken for an option,
  whatever a later version does with it.
- Secrets are registered with ``::add-mask::`` (``core.set_secret``) the moment they are read.
- Outputs go to ``$GITHUB_OUTPUT`` with a random heredoc delimiter (``core.set_output``);
  Markdown is appended to ``$GITHUB_STEP_SUMMARY``.
- Annotations are rendered by :mod:`opk_sign.actions.report` (GitHub's escaping, empty properties
  left out, which ``core.error`` does not do); text quoting registries or signers is printed
  between ``::stop-commands::`` markers so it is never taken for a workflow command.
- File inputs are confined to ``$GITHUB_WORKSPACE`` (:func:`workspace_path`, the one place that
  turns a file input into a path): no absolute path, ``..`` or symlink leads the action to read
  another of the runner's files (the docker config with registry credentials, ``/proc``...).
- :func:`run_main` is the one wrapper: an error becomes an annotation and its exit code, and even
  an unexpected exception an annotation rather than a bare traceback. Library errors name
  command-line flags (``--repository``, ``--policy FILE``); each action's :class:`Vocabulary`
  rewrites them in the action's own terms (``the repository input``) before they are shown.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Final

from actions_toolkit import core

from opk_sign.actions.report import error_annotation, parse_multiline, untrusted_block
from opk_sign.errors import EXIT_FAILURE, OpkSignError, UsageError

#: Where GitHub mounts the runner's ``$RUNNER_TEMP/_github_home`` inside a container action.
CONTAINER_HOME: Final = Path("/github/home")
_TRUE: Final = frozenset({"true", "True", "TRUE"})
_FALSE: Final = frozenset({"false", "False", "FALSE"})


# --- inputs ---------------------------------------------------------------------------------------


def _refuse_flag(name: str, value: str) -> None:
    if value.startswith("-"):
        raise UsageError(f"the {name!r} input looks like a command-line flag: {value!r}")


def input_given(name: str) -> bool:
    """Whether the runner set the input at all (it always does for inputs with a default)."""
    return f"INPUT_{name.replace(' ', '_').upper()}" in os.environ


def text_input(name: str, *, required: bool = False, hint: str | None = None) -> str:
    """A single-line input, stripped; "" when not set."""
    value = str(core.get_input(name))
    if required and not value:
        raise UsageError(f"the {name!r} input is required", hint=hint or f"set `with: {name}: …`")
    _refuse_flag(name, value)
    if "\n" in value or "\r" in value:
        raise UsageError(f"the {name!r} input must be a single line")
    return value


def lines_input(name: str) -> tuple[str, ...]:
    """A multiline input: one value per line, blank lines and ``#`` comments left out."""
    values = parse_multiline(str(core.get_input(name)))
    for value in values:
        _refuse_flag(name, value)
        if len(value.split()) > 1:
            raise UsageError(f"the {name!r} input takes one value per line, got {value!r}")
    return tuple(values)


def bool_input(name: str, *, default: bool) -> bool:
    """``true``/``false`` as YAML 1.2's core schema spells them; ``default`` when empty."""
    value = str(core.get_input(name))
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise UsageError(f"the {name!r} input must be true or false, got {value!r}")


def secret_input(name: str) -> str:
    """An input holding a secret, masked in the log before anything could print it."""
    value = str(core.get_input(name))
    mask(value)
    return value


def mask(secret: str | None) -> None:
    if secret:
        core.set_secret(secret)


def workspace_path(name: str, value: str, env: Mapping[str, str]) -> Path:
    """The file a file input names: its real path, which must be a regular file inside
    ``$GITHUB_WORKSPACE`` (the current directory when not run by a runner).

    A relative path is taken in the workspace. The path and the workspace are both resolved
    (symlinks followed, ``..`` collapsed) before they are compared, so an absolute path elsewhere,
    a ``..`` escape or a symlink in the workspace pointing out of it is refused (usage error,
    exit 2), and what is read is the resolved path that was checked.
    """
    root, real = _inside_workspace(name, value, env, "a file")
    if not real.is_file():
        what = "is not a regular file" if real.exists() else "does not exist"
        raise UsageError(
            f"the {name!r} input names {value!r}, which {what} in the workspace ({root})"
        )
    return real


def workspace_dir(name: str, value: str, env: Mapping[str, str]) -> tuple[Path, Path]:
    """The workspace and the directory a directory input names in it (which need not exist
    yet), resolved and confined as :func:`workspace_path` confines files."""
    root, real = _inside_workspace(name, value, env, "a directory")
    if real.exists() and not real.is_dir():
        raise UsageError(f"the {name!r} input names {value!r}, which is not a directory")
    return root, real


def _inside_workspace(
    name: str, value: str, env: Mapping[str, str], what: str
) -> tuple[Path, Path]:
    where = env.get("GITHUB_WORKSPACE") or os.getcwd()
    try:
        root = Path(where).resolve(strict=True)
    except (OSError, RuntimeError, ValueError):
        raise UsageError(f"the workspace {where} does not exist") from None
    given = Path(value)
    try:
        real = (given if given.is_absolute() else root / given).resolve()
    except (OSError, RuntimeError, ValueError) as err:  # a symlink loop, a NUL
        raise UsageError(f"the {name!r} input {value!r} cannot be resolved: {err}") from None
    if not real.is_relative_to(root):
        shown = "" if real == given else f" (it leads to {real})"
        raise UsageError(
            f"the {name!r} input must name {what} in the workspace: {value!r} is outside it{shown}",
            hint=f"give a path relative to the workspace ({root}), e.g. a file of the checkout;"
            " a symlink is followed and must stay inside it too",
        )
    return root, real


def docker_config_dir(env: Mapping[str, str]) -> Path | None:
    """The docker config directory the container can see.

    ``DOCKER_CONFIG`` if it exists here; a ``DOCKER_CONFIG`` naming the runner's
    ``…/_github_home/…`` (not mounted under that name) mapped to ``/github/home/…``; else
    ``/github/home/.docker``; else None (``$HOME/.docker``, the library's default).
    """
    configured = env.get("DOCKER_CONFIG")
    if configured:
        path = Path(configured)
        if path.is_dir():
            return path
        parts = path.parts
        if "_github_home" in parts:
            mapped = CONTAINER_HOME.joinpath(*parts[parts.index("_github_home") + 1 :])
            if mapped.is_dir():
                return mapped
    default = CONTAINER_HOME / ".docker"
    return default if default.is_dir() else None


# --- outputs --------------------------------------------------------------------------------------


def set_outputs(values: Mapping[str, str]) -> None:
    for name, value in values.items():
        core.set_output(name, value)


def append_summary(text: str, env: Mapping[str, str]) -> None:
    """Append Markdown to the step summary, when the runner gives one."""
    path = env.get("GITHUB_STEP_SUMMARY")
    if path:
        with open(path, "a", encoding="utf-8") as summary:
            summary.write(text)


def print_untrusted(lines: Sequence[str]) -> None:
    """Print text quoting registries and signers with workflow commands switched off."""
    print("\n".join(untrusted_block(lines, secrets.token_hex(16))), flush=True)


def annotate_error(
    message: str, *, title: str, file: str | None = None, line: int | None = None
) -> None:
    """Print an ``::error`` annotation; properties not given are left out (``::error title=…::``).

    Not ``core.error``: actions-toolkit (0.1.15) writes every property, empty ones too
    (``::error title=t,file=,line=,endLine=,col=,endColumn=::m``), which the runner takes for an
    annotation on a file named "" (and its message is not cut to an annotation's size).
    """
    print(error_annotation(message, title=title, file=file, line=line), flush=True)


# --- an action's words ----------------------------------------------------------------------------


class Vocabulary:
    """What library messages call a command-line flag, and what an action calls it instead.

    ``words`` maps phrases (``--policy FILE``, ``--repository``) to the action's terms (``the
    policy-file input``). A ``{}`` in a phrase stands for one word of the message (a registry
    host), put where the replacement has its ``{}``. Longer phrases are replaced first, so a
    whole sentence's wording wins over its flag's. A phrase is replaced only as a whole token: not
    inside a longer flag (``--policy-x``), a name (``a--policy``) or a quoted value
    (``'--policy=/etc/passwd'``, as the refusal of a flag-like input quotes it).
    """

    def __init__(self, words: Mapping[str, str]) -> None:
        self.words: dict[str, str] = dict(words)
        self._rules = [
            (self._pattern(phrase), self.words[phrase])
            for phrase in sorted(self.words, key=len, reverse=True)
        ]

    @staticmethod
    def _pattern(phrase: str) -> re.Pattern[str]:
        body = r"([^\s(),]+)".join(re.escape(part) for part in phrase.split("{}"))
        return re.compile(rf"(?<![\w'\"=-]){body}(?![\w=-])")

    def __call__(self, text: str) -> str:
        for pattern, replacement in self._rules:
            text = pattern.sub(partial(_fill, replacement), text)
        return text

    def __or__(self, other: Mapping[str, str]) -> Vocabulary:
        return Vocabulary({**self.words, **other})


def _fill(replacement: str, match: re.Match[str]) -> str:
    return replacement.replace("{}", match.group(1)) if match.groups() else replacement


#: Library wording that reads the same in both actions.
COMMON_WORDS: Final = Vocabulary(
    {
        # deadline.HINT: no input sets the action's time limits.
        "allow more time (--timeout SECONDS)": (
            "run the job again later (the action's time limits are fixed)"
        ),
        # Plain-HTTP registries (oci/transport.py, oci/auth.py, oci/reference.py): no input, but
        # the variable reaches the action from the step's env.
        "name it with --insecure-registry {} or in $OPK_SIGN_INSECURE_REGISTRIES": (
            "name it in the step's env (`OPK_SIGN_INSECURE_REGISTRIES: {}`)"
        ),
        "name it: --insecure-registry {} (or $OPK_SIGN_INSECURE_REGISTRIES)": (
            "name it in the step's env (`OPK_SIGN_INSECURE_REGISTRIES: {}`)"
        ),
        "named with --insecure-registry": "named in $OPK_SIGN_INSECURE_REGISTRIES (the step's env)",
        "--insecure-registry": "$OPK_SIGN_INSECURE_REGISTRIES (the step's env)",
    }
)


def run_main(
    run: Callable[[Mapping[str, str]], int], *, title: str, vocabulary: Vocabulary = COMMON_WORDS
) -> int:
    """Run an action with the process environment; every failure ends as an annotation, in the
    action's words."""
    try:
        return run(os.environ)
    except OpkSignError as err:
        annotate_error(vocabulary(err.diagnostics()), title=title)
        return err.exit_code or EXIT_FAILURE
    except Exception as err:  # the runner must always get an annotation, not a bare traceback
        annotate_error(f"{title} failed unexpectedly: {type(err).__name__}: {err}", title=title)
        return EXIT_FAILURE
