"""Loading a project's plugin modules and calling their hooks, with errors that name file:line.

A plugin module is imported with the project root first on ``sys.path``, and only then: the
project-local modules it loads are taken out of ``sys.modules`` afterwards and kept with the
hooks, so two projects with a ``plugins.alpha_hooks`` each never see each other's code. While
a hook runs, the project's modules and path are put back, so imports inside a hook resolve the
way they did at load time; hooks of one project may run concurrently, hooks of different
projects take turns. Plugin modules loaded ``alongside`` one another share one module table
(like one interpreter importing both) and may run concurrently too; separate loads take turns.
"""

from __future__ import annotations

import importlib
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from buildprint.errors import InputError, PolicyError
from buildprint.inputs.plugin import HOOK_NAMES, module_file, split_reference

__all__ = ["PluginHooks", "call_hook", "load_function", "load_hooks"]


@dataclass(frozen=True)
class PluginHooks:
    """The hooks one plugin module defines, with the private module table they run against."""

    project_root: Path
    module: str
    file: Path
    functions: dict[str, Callable[..., Any]]
    # name -> module object of every project-local module loaded for this plugin
    modules: dict[str, ModuleType] = field(default_factory=dict, repr=False, compare=False)

    def __contains__(self, name: object) -> bool:
        return name in self.functions

    @property
    def names(self) -> tuple[str, ...]:
        """The hook names present, sorted."""
        return tuple(sorted(self.functions))


class _ImportContext:
    """Which module table owns ``sys.path``/``sys.modules`` for project imports right now."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.table: dict[str, ModuleType] | None = None
        self.users = 0
        self.displaced: dict[str, ModuleType] = {}
        self.dont_write_bytecode = False


_CONTEXT = _ImportContext()


def _resolved(path: str | None) -> Path | None:
    try:
        return Path(path).resolve() if path else None
    except (OSError, ValueError):
        return None


def _is_local_module(module: ModuleType, root: Path) -> bool:
    """Whether ``module`` was loaded from the project (a file, or namespace folders, under it)."""
    file = _resolved(getattr(module, "__file__", None))
    if file is not None:
        return file.is_relative_to(root)
    locations = [_resolved(p) for p in getattr(module, "__path__", [])]
    return bool(locations) and all(p is not None and p.is_relative_to(root) for p in locations)


_ROOT_NAMES: dict[Path, tuple[int, frozenset[str]]] = {}


def _root_names(root: Path) -> frozenset[str]:
    """Top-level module names in ``root``, re-listed only when the folder changes (a plan
    loads one plugin per package, and listing the root each time made it quadratic)."""
    state = root.stat().st_mtime_ns
    cached = _ROOT_NAMES.get(root)
    if cached is not None and cached[0] == state:
        return cached[1]
    names = set()
    for child in root.iterdir():
        if child.suffix == ".py":
            names.add(child.stem)
        elif (child / "__init__.py").is_file():
            names.add(child.name)
    _ROOT_NAMES[root] = (state, frozenset(names))
    return _ROOT_NAMES[root][1]


def _shadowing_names(root: Path, hooks: PluginHooks) -> set[str]:
    """Top-level names an import under ``root`` resolves locally (so stale entries must go)."""
    return {name.split(".")[0] for name in [hooks.module, *hooks.modules]} | _root_names(root)


@contextmanager
def _project_imports(hooks: PluginHooks) -> Iterator[None]:
    """Put the project's modules and root in place for the duration of a load or a hook call."""
    root = hooks.project_root.resolve()
    context = _CONTEXT
    with context.condition:
        context.condition.wait_for(lambda: context.table is None or context.table is hooks.modules)
        if context.table is None:
            context.table = hooks.modules
            shadowed = _shadowing_names(root, hooks)
            for name in list(sys.modules):
                if name.split(".")[0] in shadowed and name not in hooks.modules:
                    context.displaced[name] = sys.modules.pop(name)
            for name, module in hooks.modules.items():
                previous = sys.modules.get(name)
                if previous is not None and previous is not module:
                    context.displaced[name] = previous
                sys.modules[name] = module
            sys.path.insert(0, str(root))
            # No __pycache__ in the user's project: a same-second edit of a same-size file
            # would otherwise load stale bytecode next time.
            context.dont_write_bytecode = sys.dont_write_bytecode
            sys.dont_write_bytecode = True
        context.users += 1
        before = set(sys.modules)
    try:
        yield
    finally:
        with context.condition:
            # Keep what the project loaded (at load time, or lazily inside a hook).
            for name in set(sys.modules) - before:
                module = sys.modules[name]
                if _is_local_module(module, root):
                    hooks.modules[name] = module
            context.users -= 1
            if context.users == 0:
                for name in hooks.modules:
                    sys.modules.pop(name, None)
                sys.modules.update(context.displaced)
                context.displaced.clear()
                if str(root) in sys.path:
                    sys.path.remove(str(root))
                sys.dont_write_bytecode = context.dont_write_bytecode
                context.table = None
                context.condition.notify_all()


def _plugin_frame(error: BaseException, root: Path) -> tuple[Path | None, int | None]:
    """File and line of the innermost traceback frame inside the project (the plugin code)."""
    found: tuple[Path | None, int | None] = (None, None)
    for frame in traceback.extract_tb(error.__traceback__):
        path = _resolved(frame.filename)
        if path is not None and path.is_relative_to(root):
            found = (path, frame.lineno)
    if found[0] is None and isinstance(error, SyntaxError) and error.filename:
        found = (_resolved(error.filename), error.lineno)
    return found


def _wrap(hooks: PluginHooks, error: BaseException, what: str) -> InputError:
    root = hooks.project_root.resolve()
    path, line = _plugin_frame(error, root)
    file: Path = hooks.file
    if path is not None:
        file = hooks.project_root / path.relative_to(root)
    detail = f": {error}" if str(error) else ""
    kind = PolicyError if isinstance(error, PolicyError) else InputError
    return kind(f"{what} raised {type(error).__name__}{detail}", file=file, line=line)


_FOLDER_STATES: dict[Path, int] = {}


def _invalidate_if_changed(folder: Path) -> None:
    """Drop importlib's directory caches when ``folder`` changed since the last load (a new
    or renamed file changes its mtime); not on every load, which re-lists it each time."""
    state = folder.stat().st_mtime_ns
    if _FOLDER_STATES.get(folder) != state:
        importlib.invalidate_caches()
        _FOLDER_STATES[folder] = state


def _import(
    project_root: Path, module: str, alongside: PluginHooks | None
) -> tuple[PluginHooks, ModuleType]:
    file = module_file(project_root, module)
    hooks = PluginHooks(project_root=project_root, module=module, file=file, functions={})
    if alongside is not None:
        if alongside.project_root.resolve() != project_root.resolve():
            raise ValueError("plugin modules can only share a module table within one project")
        hooks = PluginHooks(project_root, module, file, {}, alongside.modules)
    with _project_imports(hooks):
        _invalidate_if_changed(file.parent)  # files may have been written moments ago
        try:
            loaded = importlib.import_module(module)
        except (Exception, SystemExit) as error:
            raise _wrap(hooks, error, f"importing plugin module {module}") from error
    return hooks, loaded


def _function(hooks: PluginHooks, loaded: ModuleType, name: str) -> Callable[..., Any] | None:
    function = getattr(loaded, name, None)
    if function is not None and not callable(function):
        raise InputError(
            f"{hooks.module}.{name} must be a function, not {type(function).__name__}",
            file=hooks.file,
        )
    return function


def load_hooks(
    project_root: Path, module: str, *, alongside: PluginHooks | None = None
) -> PluginHooks:
    """Import plugin module ``module`` from ``project_root`` and collect its hooks.

    ``alongside``: hooks of the same project whose module table this load shares (a helper
    module both import is then loaded once, and hooks of both may run at the same time).

    Raises InputError (with file and line) when the module is missing, does not parse, raises
    while importing, or binds a hook name to something that is not callable.
    """
    hooks, loaded = _import(Path(project_root), module, alongside)
    for name in HOOK_NAMES:
        function = _function(hooks, loaded, name)
        if function is not None:
            hooks.functions[name] = function
    return hooks


def load_function(
    project_root: Path, reference: str, *, alongside: PluginHooks | None = None
) -> PluginHooks:
    """Load the global hook named ``"module:function"``; call it as ``call_hook(h, function)``."""
    module, name = split_reference(reference)
    hooks, loaded = _import(Path(project_root), module, alongside)
    function = _function(hooks, loaded, name)
    if function is None:
        raise InputError(f"plugin module {module} defines no {name!r}", file=hooks.file)
    hooks.functions[name] = function
    return hooks


def call_hook(hooks: PluginHooks, name: str, *args: Any, **kwargs: Any) -> Any:
    """Call hook ``name``; whatever the plugin raises becomes an InputError at its file:line.

    ``KeyboardInterrupt`` passes through; ``SystemExit`` from a plugin is an error like any
    other (a hook must not end the build). Asking for a hook the module lacks is a
    programming error (``KeyError``): check ``name in hooks`` first.
    """
    function = hooks.functions.get(name)
    if function is None:
        raise KeyError(f"plugin module {hooks.module} has no hook {name!r}")
    with _project_imports(hooks):
        try:
            result = function(*args, **kwargs)
        except (Exception, SystemExit) as error:
            raise _wrap(hooks, error, f"{name} hook ({hooks.module})") from error
    if name == "update_env":
        _check_env(hooks, function, result)
    return result


def _type_name(value: object) -> str:
    return type(value).__name__


def _check_env(hooks: PluginHooks, function: Callable[..., Any], result: object) -> None:
    """``update_env`` returns the build's variables: a mapping of str to str. Anything else is
    bad input at the hook's ``def`` line, naming the first offending key or value."""
    problem = None
    if not isinstance(result, Mapping):
        problem = f"returned {_type_name(result)} {result!r:.60}"
    else:
        for key, value in result.items():
            if not isinstance(key, str):
                problem = f"returned the key {key!r} ({_type_name(key)})"
            elif not isinstance(value, str):
                problem = f"returned {key}={value!r} ({_type_name(value)})"
            if problem is not None:
                break
    if problem is None:
        return
    code = getattr(function, "__code__", None)
    file = Path(code.co_filename) if code is not None else hooks.file
    root = hooks.project_root.resolve()
    if file.resolve().is_relative_to(root):
        file = hooks.project_root / file.resolve().relative_to(root)
    raise InputError(
        f"update_env hook ({hooks.module}) {problem}: it must return a mapping of variable "
        "names to str values",
        file=file if code is not None else hooks.file,
        line=code.co_firstlineno if code is not None else None,
    )
