"""Finding the modules plugin code imports: project-local files and installed distributions."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from buildprint.errors import InputError
from buildprint.inputs.plugin.canonical import canonical_tree
from buildprint.inputs.plugin.reads import bound_names, call_name

__all__ = [
    "IDENTIFIER",
    "Module",
    "canonical_distribution",
    "import_nodes",
    "installed_distributions",
    "local_path",
    "module_file",
    "parse_module",
    "split_reference",
]

#: A Python identifier (one part of a dotted module name).
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def split_reference(reference: str, *, file: str | Path | None = None) -> tuple[str, str]:
    """Split ``"module:function"`` (the form of ``host-hook``), refusing anything else."""
    module, sep, function = reference.partition(":")
    if not sep or not IDENTIFIER.match(function):
        raise InputError(
            f"function reference {reference!r} must look like 'package.module:function'", file=file
        )
    _check_module_name(module, file=file)
    return module, function


def _check_module_name(module: str, *, file: str | Path | None = None) -> None:
    if not module or not all(IDENTIFIER.match(part) for part in module.split(".")):
        raise InputError(f"{module!r} is not a dotted Python module name", file=file)


def local_path(project_root: Path, module: str) -> Path | None:
    """The file of a project-local module: ``a/b.py`` or ``a/b/__init__.py``; None if neither."""
    base = project_root.joinpath(*module.split("."))
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_file(project_root: Path, module: str) -> Path:
    """The file of plugin module ``module`` inside ``project_root``, or InputError naming it."""
    _check_module_name(module)
    path = local_path(project_root, module)
    if path is None:
        relative = Path(*module.split("."))
        raise InputError(
            f"plugin module {module!r} not found: no {relative}.py or "
            f"{relative / '__init__.py'} in the project",
            file=project_root / f"{relative}.py",
        )
    return path


@dataclass
class Module:
    """One parsed, canonicalized project-local module and what its top level binds."""

    name: str
    path: Path | None  # None: a namespace package (a folder without __init__.py)
    is_package: bool
    bindings: dict[str, list[ast.stmt]] = field(default_factory=dict)
    import_time: list[ast.stmt] = field(default_factory=list)
    star_imports: list[ast.ImportFrom] = field(default_factory=list)

    @property
    def package(self) -> str:
        """The package relative imports start from."""
        return self.name if self.is_package else self.name.rpartition(".")[0]


#: Stdlib callables and bases known to act only on what they are given (no registries, no I/O):
#: calling them at import time does not make a statement count as an import-time action.
#: Matched by last name (``functools.cache`` and ``cache`` alike); a project shadowing one of
#: these names with a registering function would be missed, which the docs call out.
_INERT = frozenset(
    {
        "property", "staticmethod", "classmethod", "abstractmethod", "cache", "lru_cache",
        "cached_property", "wraps", "total_ordering", "dataclass", "field", "overload",
        "final", "contextmanager", "asynccontextmanager", "TypeVar", "namedtuple",
        "NamedTuple", "TypedDict", "Protocol", "Generic", "Enum", "IntEnum", "StrEnum",
        "Flag", "IntFlag", "ABC", "object", "Exception", "ValueError", "RuntimeError",
        "frozenset", "tuple", "dict", "list", "set", "str", "int", "bool", "bytes",
    }
)  # fmt: skip


def _inert(node: ast.expr) -> bool:
    return call_name(node) in _INERT if isinstance(node, ast.Name | ast.Attribute) else False


def _acts_at_import(statement: ast.stmt) -> bool:
    """Whether running ``statement`` can do more than bind its names (so it counts on import).

    ``LOG = make_logger()``, ``@register`` on a function, ``class P(Base)`` (where
    ``Base.__init_subclass__`` or a metaclass runs) all call code when the module is imported,
    and that code may register something a hook later reads. A plain ``def``, ``X = 1``,
    ``@functools.cache def f`` or ``import x`` (followed separately) only binds names.
    """
    if isinstance(statement, ast.Import | ast.ImportFrom):
        return False
    stack: list[ast.AST] = [statement]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Await | ast.Yield | ast.YieldFrom):
            return True
        if isinstance(node, ast.Call):
            if not _inert(node.func):
                return True
            stack.extend([*node.args, *node.keywords])
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            # A decorator is called even when written without parentheses.
            if any(not _inert(d) and not isinstance(d, ast.Call) for d in node.decorator_list):
                return True
            stack.extend(node.decorator_list)
            if isinstance(node, ast.ClassDef):
                if node.keywords or not all(_inert(base) for base in node.bases):
                    return True
                stack.extend(node.body)  # a class body runs at definition time
            else:
                # Only what the def statement itself evaluates; the body runs when called.
                args = node.args
                stack.extend([*args.defaults, *(d for d in args.kw_defaults if d is not None)])
            continue
        if isinstance(node, ast.Lambda):
            stack.extend([*node.args.defaults, *(d for d in node.args.kw_defaults if d)])
            continue
        stack.extend(ast.iter_child_nodes(node))
    return False


def _is_main_guard(statement: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` — never runs when the module is imported as a plugin."""
    test = statement.test if isinstance(statement, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.comparators) == 1
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


def parse_module(name: str, path: Path, is_package: bool) -> Module:
    """Parse and canonicalize module ``name`` at ``path``; InputError for a syntax error."""
    try:
        source = path.read_bytes()
        tree = canonical_tree(ast.parse(source, filename=str(path)))
    except SyntaxError as error:
        raise InputError(
            f"syntax error in plugin module {name}: {error.msg}", file=path, line=error.lineno
        ) from error
    except (OSError, ValueError) as error:  # unreadable; null bytes (3.11 raises ValueError)
        raise InputError(f"cannot read plugin module {name}: {error}", file=path) from error
    except (RecursionError, MemoryError) as error:
        raise InputError(
            f"plugin module {name} is nested too deeply to parse", file=path
        ) from error
    module = Module(name=name, path=path, is_package=is_package)
    for statement in tree.body:
        if _is_main_guard(statement):
            continue
        if isinstance(statement, ast.ImportFrom) and statement.module == "__future__":
            module.import_time.append(statement)  # a compiler switch for the whole module
            continue
        if isinstance(statement, ast.ImportFrom) and any(a.name == "*" for a in statement.names):
            module.star_imports.append(statement)
        names = bound_names([statement], mutations=True)
        for bound in sorted(names):
            module.bindings.setdefault(bound, []).append(statement)
        if not names or _acts_at_import(statement):
            module.import_time.append(statement)
    return module


def import_nodes(statement: ast.stmt) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when ``statement`` runs (nested scopes excluded)."""
    stack: list[ast.AST] = [statement]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))


def installed_distributions() -> dict[str, list[str]]:
    """Import name -> the distributions providing it, as installed now."""
    return _installed_distributions(_path_state())


def _path_state() -> tuple[tuple[str, int], ...]:
    """``sys.path`` with each folder's mtime: installing or removing a package changes it."""
    state = []
    for entry in sys.path:
        try:
            state.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            continue
    return tuple(state)


@functools.lru_cache(maxsize=4)
def _installed_distributions(path_state: tuple[tuple[str, int], ...]) -> dict[str, list[str]]:
    """Import name -> distributions; reading every RECORD is slow, so once per path state."""
    del path_state  # only the cache key
    return dict(importlib.metadata.packages_distributions())


def canonical_distribution(name: str) -> str:
    """A distribution name as PEP 503 normalizes it (``Foo_Bar`` -> ``foo-bar``)."""
    return re.sub(r"[-_.]+", "-", name).lower()
