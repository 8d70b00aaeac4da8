"""What ``opk-sign --version`` prints: the version, and the commit when this code runs from a
git checkout (an editable install). Imported only when --version is given: it runs ``git``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from opk_sign._version import __version__

#: How long ``git`` may take to name the checkout's commit before --version prints without it.
GIT_TIMEOUT = 5.0


def checkout_commit() -> str | None:
    """The commit of the git checkout this package is imported from, or None when it is not
    imported from a checkout (an installed wheel) or git cannot tell. ``-dirty`` is appended
    when the checkout has uncommitted changes to tracked files."""
    root = Path(__file__).resolve().parents[3]  # <root>/src/opk_sign/cli/version.py
    if not ((root / ".git").exists() and (root / "pyproject.toml").is_file()):
        return None
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--abbrev=40", "--dirty", "--match=-"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    if done.returncode != 0 or not commit:
        return None
    return commit


def describe() -> str:
    """The line ``opk-sign --version`` prints, e.g. ``opk-sign 0.1.0`` or
    ``opk-sign 0.1.0 (commit 0123…abcd)``."""
    commit = checkout_commit()
    return f"opk-sign {__version__}" + (f" (commit {commit})" if commit else "")
