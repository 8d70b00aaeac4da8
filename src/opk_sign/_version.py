"""The package version, apart from the package root so that any module can name it cheaply."""

__version__ = "0.1.0"
