"""The `opk-sign` command line.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``,
which adds its parser and sets ``func`` (``(args) -> int``). :data:`COMMANDS` lists them, in help
order, with the line ``opk-sign --help`` shows for each: a command's module is imported, and its
parser built, only when that command is chosen (issue 13, start-up), so ``opk-sign --help`` and
``opk-sign verify --help`` never load what signing, TUF or the registry client need.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from opk_sign._version import __version__
from opk_sign.cli import signals
from opk_sign.errors import EXIT_USAGE, OpkSignError, printable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any, Final, NoReturn

#: 128 + the signal's number, as shells report a process the signal ended.
EXIT_INTERRUPTED: Final = 130
EXIT_BROKEN_PIPE: Final = 141
EXIT_TERMINATED: Final = 143

#: Every subcommand, in the order ``opk-sign --help`` lists them: its name, its module in this
#: package, and its line in that list (the ``help`` its ``register`` gives: a test holds them
#: equal).
COMMANDS: Final = (
    ("sign", "sign", "sign an image with the CI job's identity (keyless, OpenPubkey)"),
    ("verify", "verify", "verify images' signatures against an identity policy"),
    (
        "pr-check",
        "prcheck",
        "verify the images a change's Dockerfiles bring in (the pull-request check)",
    ),
    (
        "inspect",
        "inspect",
        "show an image's manifests and every referrer (signatures, attestations)",
    ),
    ("copy", "copy", "copy an image with its signatures and attestations to another repository"),
    (
        "download",
        "download",
        "write an image's signatures and the trust material to verify them to a directory",
    ),
    (
        "trust",
        "trust",
        "the TUF trust repository: install a root, show status, maintain a repository",
    ),
    (
        "library",
        "library",
        "verify or sign every tag of a Docker Official Images (bashbrew) library file",
    ),
    ("completion", "completion", "print the shell completion script for bash or zsh"),
    (
        "install",
        "install",
        "install opk-sign where images are pulled (containerd's image verifier)",
    ),
    (
        "serve",
        "serve",
        "an HTTP verification service for Kubernetes admission (external data provider)",
    ),
    (
        "log",
        "log",
        "the transparency log: monitor the signatures made in a repository's name",
    ),
    ("dev", "dev", "local development helpers (never used to verify)"),
)


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

    def _get_formatter(self) -> argparse.HelpFormatter:
        # argparse's width is shutil.get_terminal_size()'s, less 2; reading it here the same
        # way spares every --help the import of shutil (with zlib, bz2 and lzma).
        # Every argparse.HelpFormatter takes width; typeshed's protocol names only prog.
        return self.formatter_class(prog=self.prog, width=terminal_columns() - 2)  # type: ignore[call-arg]


def terminal_columns() -> int:
    """What ``shutil.get_terminal_size().columns`` says: $COLUMNS, else the terminal's, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80


class _CommandParsers(dict[str, Parser]):
    """The subcommands' parsers by name, as argparse keeps them (``choices``), each built when
    first looked up: every name is there from the start (for the usage, "invalid choice" and
    ``--help``), and looking one up imports its module, whose ``register`` replaces the stand-in.
    """

    def __init__(
        self,
        subparsers: argparse._SubParsersAction[Parser],
        modules: Iterable[tuple[str, str]],
    ) -> None:
        super().__init__()
        self._subparsers = subparsers
        self._modules = dict(modules)
        self._loading: str | None = None
        for name in self._modules:
            super().__setitem__(name, _NOT_LOADED)

    def __getitem__(self, name: str) -> Parser:
        parser = super().__getitem__(name)
        if parser is _NOT_LOADED:
            self._load(name)
            parser = super().__getitem__(name)
        return parser

    def __contains__(self, name: object) -> bool:
        # While a module registers its command, argparse asks whether the name is taken: it is
        # not, it is being built.
        return name != self._loading and super().__contains__(name)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self else default  # noqa: SIM401 - this is get()

    def values(self) -> Any:
        return {name: self[name] for name in self}.values()

    def items(self) -> Any:
        return {name: self[name] for name in self}.items()

    def _load(self, name: str) -> None:
        module = importlib.import_module(f"opk_sign.cli.{self._modules[name]}")
        listed = self._subparsers._choices_actions
        before = len(listed)
        self._loading = name
        try:
            module.register(self._subparsers)
        finally:
            self._loading = None
        del listed[before:]  # the command's line in --help is COMMANDS', listed already


class _Version(argparse.Action):
    """``--version``: the version, and the commit when run from a git checkout. The commit is
    looked up (``git``) only when --version is given, so no other start-up pays for it."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help=f"print the version ({__version__}; with the commit in a checkout) and exit",
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        from opk_sign.cli.version import describe

        print(describe())
        parser.exit()


#: A command's parser before its module is imported (``_CommandParsers``).
_NOT_LOADED: Final = Parser(add_help=False)


def build_parser() -> argparse.ArgumentParser:
    """The whole command line; a subcommand's module is imported when its parser is first used
    (parsing its arguments, printing its help)."""
    parser = Parser(
        prog="opk-sign",
        description="Keyless signing and verification of container images with OpenPubkey.",
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=Parser
    )
    sub._name_parser_map = sub.choices = _CommandParsers(
        sub, ((name, module) for name, module, _ in COMMANDS)
    )
    for name, _, line in COMMANDS:
        sub._choices_actions.append(sub._ChoicesPseudoAction(name, (), line))
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
