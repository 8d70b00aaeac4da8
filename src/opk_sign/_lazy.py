"""PEP 562 lazy exports for a package's ``__init__``: a public name is imported from its module
when first used (issue 13, start-up: naming a package must not load what its names need)."""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, MutableMapping
    from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], public: list[str], namespace: MutableMapping[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The package's ``__getattr__`` (``exports``: each name and the module defining it; the
    value is kept in ``namespace``, the package's globals, so it is looked up once) and its
    ``__dir__`` (``public``, its ``__all__``)."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(public)

    return __getattr__, __dir__
