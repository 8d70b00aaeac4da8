"""The package version, apart from the package root so that any module can name it cheaply.

``opk-sign --version`` adds the commit when run from a checkout (opk_sign.cli.version).
"""

__version__ = "0.1.0"
