"""buildprint: build packages from source, keyed by a complete build signature.

The library entry is :class:`Engine` (one project, opened for one run) with its
:class:`Options`::

    from buildprint import Engine, Options

    with Engine(Path("my-project"), Options(requirements=["six==1.16.0"])) as engine:
        for entry in engine.plan_entries():
            print(entry.name, entry.action, entry.reason)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Engine", "Options", "__version__"]

__version__ = "0.1.0"

if TYPE_CHECKING:
    from buildprint.engine import Engine
    from buildprint.options import Options


def __getattr__(name: str) -> Any:
    # Imported on first use: every module imports this package, and most need none of it.
    if name == "Engine":
        from buildprint.engine import Engine

        return Engine
    if name == "Options":
        from buildprint.options import Options

        return Options
    raise AttributeError(f"module 'buildprint' has no attribute {name!r}")
