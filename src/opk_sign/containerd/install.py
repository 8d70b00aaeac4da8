"""Installing the containerd verifier on a node (``opk-sign install containerd-verifier``).

Two files: a small executable in containerd's verifier directory that runs *this* installation
of opk-sign (its Python, ``-I``: no ``PYTHONPATH`` or user site from containerd's environment),
and the settings file it names. The settings never go into the verifier directory: containerd
runs every entry there as a verifier, and a file it cannot run refuses every pull.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from opk_sign.admission.settings import SETTINGS_FILE, Settings
from opk_sign.errors import UsageError

#: containerd's default verifier directory (its default config enables the plugin there).
DEFAULT_BIN_DIR: Final = Path("/opt/containerd/image-verifier/bin")
#: The executable's name: containerd's errors say "verifier opk-sign rejected image".
EXECUTABLE: Final = "opk-sign"
DEFAULT_CACHE_DIR: Final = Path("/var/lib/opk-sign/containerd-verifier")
DEFAULT_AUDIT_LOG: Final = Path("/var/log/opk-sign/containerd-verifier.jsonl")


def default_config(bin_dir: Path) -> Path:
    """Next to the verifier directory, not in it: ``<bin_dir>/../<SETTINGS_FILE>``."""
    return bin_dir.parent / SETTINGS_FILE


@dataclass(frozen=True)
class Installed:
    executable: Path
    config: Path
    fragment: str


#: containerd runs at most this many files of the verifier directory, the first in name order
#: (the fragment below sets it; a verifier past it is silently never run).
MAX_VERIFIERS = 10


def containerd_fragment(bin_dir: Path, timeout: float = 10.0) -> str:
    """The containerd config (version 3, containerd 2.x) enabling the verifier directory."""
    return (
        '[plugins."io.containerd.image-verifier.v1.bindir"]\n'
        f'  bin_dir = "{bin_dir}"\n'
        f"  max_verifiers = {MAX_VERIFIERS}\n"
        f'  per_verifier_timeout = "{timeout:g}s"\n'
    )


def executable_text(config: Path, python: str) -> str:
    module = "opk_sign.containerd.verifier"
    command = " ".join(
        shlex.quote(part) for part in (python, "-I", "-m", module, "-config", str(config))
    )
    return (
        "#!/bin/sh\n"
        "# opk-sign's image verifier for containerd (docs/containerd.md), written by\n"
        "# `opk-sign install containerd-verifier`: runs this installation of opk-sign with\n"
        "# the settings below. containerd runs every file in this directory on each pull.\n"
        f'exec {command} "$@"\n'
    )


def install(
    settings: Settings,
    *,
    bin_dir: Path = DEFAULT_BIN_DIR,
    config: Path | None = None,
    python: str | None = None,
) -> Installed:
    bin_dir = Path(os.path.abspath(bin_dir))
    config = Path(os.path.abspath(config or default_config(bin_dir)))
    if config.parent == bin_dir:
        raise UsageError(
            f"the settings file {config} is inside the verifier directory {bin_dir}",
            hint="containerd runs every file there as a verifier; put the settings elsewhere",
        )
    python = python or sys.executable
    if not python or not os.access(python, os.X_OK):
        raise UsageError(f"this installation's Python ({python!r}) cannot be run")
    text = settings.to_toml()
    _check_position(bin_dir)
    try:
        bin_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        config.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        _write(config, text.encode(), 0o644)
        executable = bin_dir / EXECUTABLE
        _write(executable, executable_text(config, python).encode(), 0o755)
    except OSError as err:
        raise UsageError(
            f"cannot install the verifier: {err.strerror}: {err.filename}",
            hint="install as the user containerd runs as (root), or choose directories this "
            "user can write",
        ) from None
    return Installed(executable, config, containerd_fragment(bin_dir))


def _check_position(bin_dir: Path) -> None:
    """Refuse an installation containerd would never run: past the first MAX_VERIFIERS files of
    the directory in name order, every pull would be allowed unverified."""
    try:
        others = {entry for entry in os.listdir(bin_dir) if entry != EXECUTABLE}
    except FileNotFoundError:
        return
    except OSError as err:
        raise UsageError(f"cannot read the verifier directory {bin_dir}: {err.strerror}") from None
    position = sorted({*others, EXECUTABLE}).index(EXECUTABLE)
    if position >= MAX_VERIFIERS:
        raise UsageError(
            f"{bin_dir} holds {len(others)} other files, {position} of them before "
            f"{EXECUTABLE!r} in name order: containerd runs only the first {MAX_VERIFIERS}, "
            "so opk-sign would never verify a pull",
            hint=f"remove files from {bin_dir}, or install into another verifier directory",
        )


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write ``path`` whole or not at all: the partial file is not executable while it is
    written (containerd runs every file of the verifier directory) and is removed on failure."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
