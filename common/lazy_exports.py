"""Lazy re-exports for a package ``__init__``: its public API in ``__all__`` without importing heavy modules.

Why: importing any submodule runs its package's ``__init__`` first, so an
``__init__`` that imported its job modules would load TensorFlow or Beam for
``import ctrflow.model.config``. With ``lazy_exports`` (PEP 562's module
``__getattr__``) a name loads its module on first use. Static tools see the
same names through an ``if TYPE_CHECKING:`` import block beside the call;
tests/test_public_api.py checks that every name in every ``__all__`` resolves.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(namespace: dict[str, Any], names: Mapping[str, tuple[str, ...]] | None = None,
                 modules: tuple[str, ...] = ()) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for the package whose ``globals()`` is ``namespace``.

    ``names``: submodule (relative to the package) -> the names it defines that the package re-exports;
    ``modules``: submodules the package offers as attributes (``ctrflow.model.train``).
    """
    package = namespace["__name__"]
    where = {name: f"{package}.{module}" for module, found in (names or {}).items() for name in found}
    where.update({module: "" for module in modules})

    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if where[name]:
            value = getattr(importlib.import_module(where[name]), name)
        else:
            value = importlib.import_module(f"{package}.{name}")
        namespace[name] = value  # later lookups are plain attribute reads
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
