"""The ``plugin`` component: from the hooks to everything they reach, digested."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from collections.abc import Collection
from pathlib import Path

from buildprint.errors import InputError
from buildprint.inputs.plugin.canonical import canonical_statement
from buildprint.inputs.plugin.modules import (
    IDENTIFIER,
    Module,
    canonical_distribution,
    import_nodes,
    installed_distributions,
    local_path,
    module_file,
    parse_module,
    split_reference,
)
from buildprint.inputs.plugin.reads import (
    DynamicImport,
    NamespaceRead,
    NameUse,
    NestedImport,
    alias_binding,
    module_scope_reads,
)
from buildprint.signature.canonical import CanonicalValue, digest_value

__all__ = ["HOOK_NAMES", "IMPORT_TIME", "function_reference", "plugin_digest"]

#: The per-package hooks a plugin module may define, in the order a build calls them.
HOOK_NAMES: tuple[str, ...] = ("signature", "update_env", "prepare_source", "build_wheel")

#: Key of a module's import-time statements in the ``code`` mapping; never a Python name.
IMPORT_TIME = "<module>"

_RECURSION_LIMIT = 6000


class _Reachability:
    """Walks from the hooks to everything they can reach, recording code and distributions."""

    def __init__(self, project_root: Path) -> None:
        self.root = project_root
        self.code: dict[str, str] = {}
        self.third_party: dict[str, CanonicalValue] = {}
        self._modules: dict[str, Module | None] = {}
        self._seen_names: set[tuple[str, str]] = set()
        self._seen_uses: set[tuple[str, str, tuple[str, ...]]] = set()
        self._touched: set[str] = set()
        self._whole: set[str] = set()
        self._distributions: dict[str, list[str]] | None = None

    # modules -------------------------------------------------------------------------------
    def _packages_distributions(self) -> dict[str, list[str]]:
        if self._distributions is None:
            self._distributions = installed_distributions()
        return self._distributions

    def is_local(self, dotted: str) -> bool:
        """Whether ``import dotted`` finds a module in the project (project root first)."""
        if local_path(self.root, dotted) is not None:
            return True
        if not self.root.joinpath(*dotted.split(".")).is_dir():
            return False
        parent, _, _ = dotted.rpartition(".")
        if parent:
            return self.is_local(parent)
        # A folder without __init__.py is a namespace package only if no regular package of
        # that name exists elsewhere on the path (a regular package anywhere wins).
        return dotted not in sys.stdlib_module_names and dotted not in (
            self._packages_distributions()
        )

    def module(self, dotted: str) -> Module | None:
        """The parsed local module ``dotted`` (None when it is not local)."""
        if dotted not in self._modules:
            path = local_path(self.root, dotted)
            if path is not None:
                self._modules[dotted] = parse_module(dotted, path, path.name == "__init__.py")
            elif self.is_local(dotted):
                self._modules[dotted] = Module(name=dotted, path=None, is_package=True)
            else:
                self._modules[dotted] = None
        return self._modules[dotted]

    def submodules(self, package: Module) -> list[str]:
        folder = self.root.joinpath(*package.name.split("."))
        names = set()
        for child in folder.iterdir():
            stem = child.name[:-3] if child.name.endswith(".py") else child.name
            if stem == "__init__":  # the package itself, not a submodule
                continue
            if IDENTIFIER.match(stem) and (child.suffix == ".py" or child.is_dir()):
                names.add(f"{package.name}.{stem}")
        return sorted(n for n in names if self.is_local(n))

    def external(self, dotted: str) -> None:
        """Record the distribution providing a non-local import; stdlib counts as nothing."""
        top = dotted.split(".")[0]
        if top in sys.stdlib_module_names or self.is_local(top):
            return
        distributions = self._packages_distributions().get(top)
        if not distributions:
            # Importable without a distribution (or not installed): say so, by import name.
            self.third_party.setdefault(top, None)
            return
        for distribution in distributions:
            try:
                version: CanonicalValue = importlib.metadata.version(distribution)
            except importlib.metadata.PackageNotFoundError:
                version = None
            self.third_party[canonical_distribution(distribution)] = version

    def absolute(self, origin: Module, node: ast.ImportFrom) -> str:
        """The absolute module name of ``from <node.module> import ...`` inside ``origin``."""
        if not node.level:
            return node.module or ""
        parts = origin.package.split(".") if origin.package else []
        if node.level - 1 >= len(parts) or not parts:
            raise InputError(
                f"relative import beyond the top-level package in {origin.name}",
                file=origin.path,
                line=node.lineno,
            )
        base = parts[: len(parts) - (node.level - 1)]
        return ".".join([*base, node.module] if node.module else base)

    # what runs at import time ----------------------------------------------------------------
    def touch(self, dotted: str) -> None:
        """``dotted`` gets imported: its parents' and its own top-level statements run."""
        parts = dotted.split(".")
        for end in range(1, len(parts) + 1):
            name = ".".join(parts[:end])
            if name in self._touched:
                continue
            self._touched.add(name)
            module = self.module(name)
            if module is None:
                self.external(name)
                return
            if module.import_time:
                self.code[f"{name}:{IMPORT_TIME}"] = digest_value(
                    [canonical_statement(s) for s in module.import_time]
                )
                for statement in module.import_time:
                    self.trace(module, statement)
            # Every top-level import runs on import, used or not: its target's top level runs.
            for statements in module.bindings.values():
                for statement in statements:
                    for node in import_nodes(statement):
                        self.touch_import(module, node)

    def touch_import(self, origin: Module, node: ast.Import | ast.ImportFrom) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.touch(alias.name)
            return
        target = self.absolute(origin, node)
        self.touch(target)
        for alias in node.names:
            if alias.name != "*" and self.is_local(f"{target}.{alias.name}"):
                self.touch(f"{target}.{alias.name}")

    # names ---------------------------------------------------------------------------------
    def name(self, module: Module, name: str, attrs: tuple[str, ...] = ()) -> None:
        """``name`` (then ``.attrs``) is read from the top level of ``module``."""
        use = (module.name, name, attrs)
        if use in self._seen_uses:
            return
        self._seen_uses.add(use)
        self.touch(module.name)
        statements = module.bindings.get(name)
        if statements is None:
            # A builtin, or a name only a star import or a module __getattr__ provides.
            for star in module.star_imports:
                target = self.absolute(module, star)
                if self.module(target) is None:
                    self.external(target)
                else:
                    self.whole(target)
            if "__getattr__" in module.bindings:
                self.name(module, "__getattr__")
            return
        if (module.name, name) not in self._seen_names:
            self._seen_names.add((module.name, name))
            self.code[f"{module.name}:{name}"] = digest_value(
                [canonical_statement(s) for s in statements]
            )
            for statement in statements:
                self.trace(module, statement)
        # Follow a name bound by an import to what it names, as precisely as the use allows.
        for statement in statements:
            for node in import_nodes(statement):
                for alias in node.names:
                    if alias_binding(alias, node) == name:
                        self.follow_alias(module, node, alias, attrs)

    def follow_alias(
        self,
        origin: Module,
        node: ast.Import | ast.ImportFrom,
        alias: ast.alias,
        attrs: tuple[str, ...],
    ) -> None:
        if isinstance(node, ast.Import):
            if alias.asname:  # import a.b as z: z is a.b
                self.module_use(alias.name, attrs)
            else:  # import a.b.c binds a; a.b.c.x reaches into it
                self.module_use(alias.name.split(".")[0], attrs)
            return
        target = self.absolute(origin, node)
        submodule = f"{target}.{alias.name}"
        if self.is_local(submodule):
            self.module_use(submodule, attrs)
        elif (module := self.module(target)) is not None:
            self.name(module, alias.name, attrs)
        else:
            self.external(target)

    def module_use(self, dotted: str, attrs: tuple[str, ...]) -> None:
        """Module ``dotted`` is used as ``dotted.attrs``; bare use (no attrs) takes all of it."""
        module = self.module(dotted)
        if module is None:
            self.external(dotted)
            return
        self.touch(dotted)
        if attrs and self.is_local(f"{dotted}.{attrs[0]}"):
            self.module_use(f"{dotted}.{attrs[0]}", attrs[1:])
        elif attrs:
            self.name(module, attrs[0], attrs[1:])
        else:
            # Passed around as a value (getattr(module, name), vars(module), ...): any of its
            # names may be read, so all of them count.
            self.whole(dotted)

    def whole(self, dotted: str) -> None:
        """Every name of ``dotted`` counts (and, for a package, of its direct submodules)."""
        if dotted in self._whole:
            return
        self._whole.add(dotted)
        module = self.module(dotted)
        if module is None:
            self.external(dotted)
            return
        self.touch(dotted)
        for name in sorted(module.bindings):
            self.name(module, name)
        if module.is_package:
            for submodule in self.submodules(module):
                self.whole(submodule)

    # statements ----------------------------------------------------------------------------
    def trace(self, module: Module, statement: ast.stmt) -> None:
        """Follow everything a top-level statement of ``module`` reads."""
        for use in module_scope_reads(statement):
            if isinstance(use, NameUse):
                self.name(module, use.name, use.attrs)
            elif isinstance(use, NamespaceRead):
                self.whole(module.name)
            elif isinstance(use, DynamicImport):
                self.dynamic_import(module, use.module)
            elif isinstance(use, NestedImport):
                self.nested_import(module, use.node, top_level=statement)

    def nested_import(
        self, module: Module, node: ast.Import | ast.ImportFrom, *, top_level: ast.stmt
    ) -> None:
        if node is top_level or any(node is s for s in import_nodes(top_level)):
            # A top-level import (even inside try/if): followed by name, when a name is used.
            self.touch_import(module, node)
            return
        # Inside a function: the names it binds are locals we do not track, so take what it
        # imports whole (for ``from m import n``, just ``n``).
        if isinstance(node, ast.Import):
            for alias in node.names:
                self.module_use(alias.name, ())
            return
        for alias in node.names:
            if alias.name == "*":
                self.module_use(self.absolute(module, node), ())
            else:
                self.follow_alias(module, node, alias, ())

    def dynamic_import(self, module: Module, target: str | None) -> None:
        if target is not None and not target.startswith("."):
            self.module_use(target, ())
            return
        # A module name chosen at run time: any module of the caller's top-level package may
        # be loaded, or, for a module outside any package, any top-level module of the project.
        top = module.name.split(".")[0]
        top_module = self.module(top)
        if top_module is not None and top_module.is_package:
            self.whole(top)
            return
        for candidate in sorted(self.root.iterdir()):
            stem = candidate.name.removesuffix(".py")
            if IDENTIFIER.match(stem) and local_path(self.root, stem) is not None:
                self.whole(stem)


def _reach(
    project_root: Path, module: str, hooks: Collection[str], *, required: bool
) -> _Reachability:
    path = module_file(project_root, module)
    reach = _Reachability(project_root)
    plugin = reach.module(module)
    assert plugin is not None  # module_file found it
    for hook in sorted(set(hooks)):
        if not IDENTIFIER.match(hook):
            raise InputError(f"{hook!r} is not a hook name", file=path)
        if hook not in plugin.bindings and required:
            raise InputError(f"plugin module {module} defines no {hook!r}", file=path)
    reach.touch(module)  # loading the plugin runs its top level
    for hook in sorted(set(hooks) & plugin.bindings.keys()):
        reach.name(plugin, hook)
    return reach


def _digest(
    project_root: Path, module: str, hooks: Collection[str], *, required: bool
) -> dict[str, CanonicalValue]:
    # Canonicalizing, serializing and scanning recurse once or twice per nesting level: give
    # long operator chains (a 500-term string concatenation) room the default 1000 does not.
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, _RECURSION_LIMIT))
    try:
        reach = _reach(project_root, module, hooks, required=required)
    except RecursionError as error:  # an expression thousands of levels deep
        raise InputError(
            f"plugin code reached from {module} is nested too deeply to digest",
            file=module_file(project_root, module),
        ) from error
    finally:
        if sys.getrecursionlimit() == max(limit, _RECURSION_LIMIT):
            sys.setrecursionlimit(limit)
    code: dict[str, CanonicalValue] = dict(sorted(reach.code.items()))
    third_party: dict[str, CanonicalValue] = dict(sorted(reach.third_party.items()))
    return {"module": module, "code": code, "third-party": third_party}


def plugin_digest(
    project_root: Path, module: str, hooks: Collection[str] = HOOK_NAMES
) -> dict[str, CanonicalValue]:
    """The ``plugin`` component value for the hooks of ``module`` (a project-local module).

    ``{"module": ..., "code": {"module:name": digest, ...}, "third-party": {dist: version}}``.
    ``code`` holds one canonical digest per reachable top-level name (``<module>`` for a
    module's import-time statements); hooks in ``hooks`` the module does not define are
    simply absent. Raises InputError for a missing module or a syntax error (with its line).
    """
    return _digest(Path(project_root), module, hooks, required=False)


def function_reference(project_root: Path, reference: str) -> dict[str, CanonicalValue]:
    """The same value for one function named ``"module:function"`` (the global host hook).

    Unlike a per-package hook the function must exist: a reference to nothing is bad input.
    """
    module, function = split_reference(reference)
    return _digest(Path(project_root), module, (function,), required=True)
