"""The `opk-sign` command line: argparse in, library calls, exit codes out (docs/adr/0002).

The entry point is ``opk_sign.cli.main:main``; each subcommand is a module of this package."""
