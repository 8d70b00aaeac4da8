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
- :func:`run_main` is the one wrapper: an error becomes an annotation and its exit code, and even
  an unexpected exception an annotation rather than a bare traceback.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping, Sequence
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


def workspace_path(value: str, env: Mapping[str, str]) -> Path:
    """A path input: relative paths are in ``$GITHUB_WORKSPACE``."""
    path = Path(value)
    return path if path.is_absolute() else Path(env.get("GITHUB_WORKSPACE") or ".") / path


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


def annotate_error(message: str, *, title: str) -> None:
    print(error_annotation(message, title=title), flush=True)


def run_main(run: Callable[[Mapping[str, str]], int], *, title: str) -> int:
    """Run an action with the process environment; every failure ends as an annotation."""
    try:
        return run(os.environ)
    except OpkSignError as err:
        annotate_error(err.diagnostics(), title=title)
        return err.exit_code or EXIT_FAILURE
    except Exception as err:  # the runner must always get an annotation, not a bare traceback
        annotate_error(f"{title} failed unexpectedly: {type(err).__name__}: {err}", title=title)
        return EXIT_FAILURE
