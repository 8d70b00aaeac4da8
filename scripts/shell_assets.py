#!/usr/bin/env python3
"""Generate the shell completions and the man page shipped in the package, from the argparse
parser itself, into src/opk_sign/share/:

    opk-sign.bash   bash completion (shtab)       `opk-sign completion bash` prints it
    _opk-sign       zsh completion (shtab)        `opk-sign completion zsh` prints it
    opk-sign.1      the man page (argparse-manpage)

Run it after changing any option: ``python scripts/shell_assets.py``. With ``--check`` it writes
nothing and exits 1 when a shipped file differs from what the parser gives (tests run that).
shtab and argparse-manpage come with the `test` extra; the package itself needs neither.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARE = ROOT / "src" / "opk_sign" / "share"


def _release_date(version: str) -> str:
    """The CHANGELOG's date for ``version`` (the man page's date), or "unreleased"."""
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    found = re.search(rf"^## \[{re.escape(version)}\] - (\d{{4}}-\d{{2}}-\d{{2}})", changelog, re.M)
    return found.group(1) if found else "unreleased"


def generate() -> dict[str, str]:
    """Every shipped file's name and text."""
    os.environ["COLUMNS"] = "100"  # argparse wraps usage lines to the terminal: fix the width
    for name in [n for n in os.environ if n.startswith("OPK_SIGN_")]:
        del os.environ[name]  # defaults some options read from the environment
    os.environ["HOME"] = "/home/user"  # and from the home directory
    sys.path.insert(0, str(ROOT / "src"))
    import shtab
    from argparse_manpage.manpage import Manpage

    from opk_sign._version import __version__
    from opk_sign.cli.main import build_parser

    manpage = Manpage(
        build_parser(),
        format="single-commands-section",
        _data={
            "project_name": "opk-sign",
            "version": __version__,
            "date": _release_date(__version__),
            "manual_title": "opk-sign manual",
            "manual_section": "1",
            "url": "https://github.com/opk-sign/opk-sign",
        },
    )
    texts = {
        "opk-sign.bash": shtab.complete(build_parser(), "bash"),
        "_opk-sign": shtab.complete(build_parser(), "zsh"),
        "opk-sign.1": str(manpage),
    }
    return {name: text.rstrip("\n") + "\n" for name, text in texts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="only check the shipped files")
    parser.add_argument(
        "--out", type=Path, default=SHARE, help="where to write (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, text in generate().items():
        path = args.out / name
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(
            f"out of date in {args.out}: {', '.join(stale)} (run python scripts/shell_assets.py)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
