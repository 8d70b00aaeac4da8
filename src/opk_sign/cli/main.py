"""The `opk-sign` command line.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (``(args) -> int``). They are listed here, in help order.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any, Final, NoReturn

from opk_sign._version import __version__
from opk_sign.cli import copy, dev, download, inspect, sign, signals, trust, verify
from opk_sign.cli import prcheck as pr_check
from opk_sign.errors import EXIT_USAGE, OpkSignError, printable

#: 128 + the signal's number, as shells report a process the signal ended.
EXIT_INTERRUPTED: Final = 130
EXIT_BROKEN_PIPE: Final = 141
EXIT_TERMINATED: Final = 143

#: Every subcommand, in the order ``opk-sign --help`` lists them.
SUBCOMMANDS: Final = (sign, verify, pr_check, inspect, copy, download, trust, dev)


class Parser(argparse.ArgumentParser):
    """No abbreviated options (``--out`` is not ``--output``: a later option would change what
    it means), and a usage error is one line and a pointer to --help, not the whole usage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(
            EXIT_USAGE,
            f"{self.prog}: error: {message}\nusage: see `{self.prog} --help`\n",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="opk-sign",
        description="Keyless signing and verification of container images with OpenPubkey.",
    )
    parser.add_argument("--version", action="version", version=f"opk-sign {__version__}")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    for command in SUBCOMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    signals.install()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.func(args))
    except OpkSignError as err:
        print(f"error: {printable(err.diagnostics())}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt as interrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_TERMINATED if isinstance(interrupt, signals.Terminated) else EXIT_INTERRUPTED
    except BrokenPipeError:
        # A closed stdout (`| head -1`): end quietly; no traceback when Python flushes at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
