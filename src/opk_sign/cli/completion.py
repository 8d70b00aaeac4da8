"""``opk-sign completion bash|zsh``: print the shell completion script shipped in the package.

The scripts (and the man page, ``opk-sign.1``) are generated from this command line's parser by
scripts/shell_assets.py and shipped in ``opk_sign/share/``; a test holds them equal to what the
parser gives, so printing them needs neither the generator nor any other command's module.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from typing import Any

#: The shipped file of each shell.
SCRIPTS = {"bash": "opk-sign.bash", "zsh": "_opk-sign"}

EPILOG = """\
examples:
  eval "$(opk-sign completion bash)"                     # this bash session (or add to ~/.bashrc)
  opk-sign completion zsh > "${fpath[1]}/_opk-sign"      # zsh: a file named _opk-sign in $fpath
"""


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "completion",
        help="print the shell completion script for bash or zsh",
        description="Print the completion script of SHELL (generated from this command line "
        "with shtab) to standard output. The man page ships beside it in the package "
        "(opk_sign/share/opk-sign.1).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("shell", choices=sorted(SCRIPTS), metavar="SHELL", help="bash or zsh")
    parser.set_defaults(func=run)


def shipped(name: str) -> str:
    """The text of a file of ``opk_sign/share`` (completion scripts, man page)."""
    return resources.files("opk_sign").joinpath("share", name).read_text(encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    sys.stdout.write(shipped(SCRIPTS[args.shell]))
    return 0
