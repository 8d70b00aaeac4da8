"""Where the test services' binaries are: Go tools built by scripts/setup, Debian binaries."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

TOOLS_DIR = Path(os.environ.get("OPK_SIGN_TOOLS", Path.home() / ".cache/opk-sign/tools"))


def tool_path(name: str) -> Path:
    """Path of a tool installed by `make setup`; a missing tool is a failure, never a skip."""
    for candidate in (TOOLS_DIR / "bin" / name, shutil.which(name)):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise RuntimeError(f"{name} is not installed: run `make setup` (it builds the test tools)")
