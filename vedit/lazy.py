"""Package attributes imported on first use, so importing a package costs only what is used.

``vedit.triton_repo`` needs it: Triton's python stub imports its ``requests`` module where neither
tritonclient nor protobuf need be installed. ``vedit.serving`` uses it so that assembling the CLI
does not start the server's imports.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any, Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps a name to the module that defines it."""

    def __getattr__(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(import_module(module), name)

    return __getattr__


__all__ = ["lazy_exports"]
