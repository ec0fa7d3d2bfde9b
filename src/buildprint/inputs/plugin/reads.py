"""What a top-level statement reads from its module: names, attribute chains and imports."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "DynamicImport",
    "NameUse",
    "NamespaceRead",
    "NestedImport",
    "Use",
    "alias_binding",
    "bound_names",
    "call_name",
    "module_scope_reads",
]

_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
#: Calls that read a module's namespace by name: the whole calling module counts.
_NAMESPACE_READERS = frozenset({"globals", "vars", "eval", "exec"})
#: Calls that import a module chosen at run time.
_DYNAMIC_IMPORTERS = frozenset({"__import__", "import_module"})


@dataclass(frozen=True)
class NameUse:
    """``name.attr1.attr2`` read from module scope (``attrs`` empty: the bare value)."""

    name: str
    attrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class NestedImport:
    """An import statement inside a function or class body, run when the code runs."""

    node: ast.Import | ast.ImportFrom


@dataclass(frozen=True)
class DynamicImport:
    """``importlib.import_module(x)`` / ``__import__(x)``; ``module`` is None unless a literal."""

    module: str | None


@dataclass(frozen=True)
class NamespaceRead:
    """``globals()``, ``vars()``, ``eval``, ``exec``: the module's names are read by string."""


Use = NameUse | NestedImport | DynamicImport | NamespaceRead


def _target_names(node: ast.AST, *, mutations: bool) -> Iterator[str]:
    """Names an assignment target binds; with ``mutations``, also ``x`` of ``x.a =``/``x[k] =``."""
    if isinstance(node, ast.Name):
        yield node.id
    elif isinstance(node, ast.Starred):
        yield from _target_names(node.value, mutations=mutations)
    elif isinstance(node, ast.Tuple | ast.List):
        for element in node.elts:
            yield from _target_names(element, mutations=mutations)
    elif mutations and isinstance(node, ast.Attribute | ast.Subscript):
        base: ast.expr = node
        while isinstance(base, ast.Attribute | ast.Subscript):
            base = base.value
        if isinstance(base, ast.Name):
            yield base.id


def alias_binding(alias: ast.alias, node: ast.Import | ast.ImportFrom) -> str | None:
    """The name an import alias binds (``import a.b`` binds ``a``); None for ``*``."""
    if alias.name == "*":
        return None
    if alias.asname:
        return alias.asname
    return alias.name.split(".")[0] if isinstance(node, ast.Import) else alias.name


def bound_names(nodes: list[ast.stmt], *, mutations: bool = False) -> set[str]:
    """Names bound in the scope these statements run in (nested scopes are not entered)."""
    names: set[str] = set()
    stack: list[ast.AST] = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
            # Decorators, defaults and bases run here; a walrus in them binds here.
            stack.extend(node.decorator_list)
            if not isinstance(node, ast.ClassDef):
                stack.extend(node.args.defaults)
                stack.extend(d for d in node.args.kw_defaults if d is not None)
            else:
                stack.extend(node.bases)
            continue
        if isinstance(node, (ast.Lambda, *_COMPREHENSIONS)):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            names.update(n for a in node.names if (n := alias_binding(a, node)) is not None)
        elif isinstance(node, ast.Assign | ast.Delete):
            for target in node.targets:
                names.update(_target_names(target, mutations=mutations))
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            names.update(_target_names(node.target, mutations=mutations))
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
        stack.extend(ast.iter_child_nodes(node))
    return names


def _attribute_chain(node: ast.Attribute) -> tuple[ast.expr, tuple[str, ...]]:
    attrs: list[str] = []
    base: ast.expr = node
    while isinstance(base, ast.Attribute):
        attrs.append(base.attr)
        base = base.value
    return base, tuple(reversed(attrs))


def call_name(func: ast.expr) -> str | None:
    """The last name of what is called (``f`` of ``f()`` and of ``m.f()``), if it has one."""
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


class _ModuleScopeReads(ast.NodeVisitor):
    """Collect what a top-level statement reads from module scope.

    A name counts unless a function (or lambda, or comprehension) around the read binds it:
    Python makes a name assigned anywhere in a function local to all of that function. Class
    bodies are not treated as binding: a class body reads unbound names from module scope, and
    its methods do not see class-level names at all. Guessing "module scope" when unsure only
    adds code to the digest; it never loses a dependency.
    """

    def __init__(self) -> None:
        self.uses: list[Use] = []
        self._local: frozenset[str] = frozenset()

    # names and attribute chains
    def visit_Name(self, node: ast.Name) -> None:
        if node.id not in self._local:
            self.uses.append(NameUse(node.id))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        base, attrs = _attribute_chain(node)
        if isinstance(base, ast.Name):
            if base.id not in self._local:
                self.uses.append(NameUse(base.id, attrs))
        else:
            self.visit(base)

    def visit_Call(self, node: ast.Call) -> None:
        name = call_name(node.func)
        if name in _NAMESPACE_READERS and name not in self._local:
            self.uses.append(NamespaceRead())
        elif name in _DYNAMIC_IMPORTERS and name not in self._local:
            first = node.args[0] if node.args else None
            literal = (
                first.value
                if isinstance(first, ast.Constant) and isinstance(first.value, str)
                else None
            )
            self.uses.append(DynamicImport(literal))
        self.generic_visit(node)

    # imports inside functions bind locals; what they import is still a dependency
    def visit_Import(self, node: ast.Import) -> None:
        self.uses.append(NestedImport(node))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.uses.append(NestedImport(node))

    # scopes
    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        args = node.args
        # Defaults, decorators and annotations are evaluated where the function is defined.
        for default in [*args.defaults, *(d for d in args.kw_defaults if d is not None)]:
            self.visit(default)
        every_arg = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        every_arg += [a for a in (args.vararg, args.kwarg) if a is not None]
        if not isinstance(node, ast.Lambda):
            for decorator in node.decorator_list:
                self.visit(decorator)
            for arg in every_arg:
                if arg.annotation is not None:
                    self.visit(arg.annotation)
            if node.returns is not None:
                self.visit(node.returns)
            for param in getattr(node, "type_params", []):
                self.visit(param)
            body: list[ast.stmt] = node.body
        else:
            body = [ast.Expr(node.body)]
        declared_global: set[str] = set()
        for inner in body:
            for sub in ast.walk(inner):
                if isinstance(sub, ast.Global):
                    declared_global.update(sub.names)
        local = bound_names(body) | {a.arg for a in every_arg}
        outer = self._local
        self._local = (outer | local) - declared_global
        for statement in body:
            self.visit(statement)
        self._local = outer

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._function(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._function(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self._function(node)

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        # The first iterable runs outside the comprehension: [x for x in x] reads the outer x.
        self.visit(node.generators[0].iter)
        outer = self._local
        targets: set[str] = set()
        for generator in node.generators:
            targets.update(_target_names(generator.target, mutations=False))
        self._local = outer | targets
        for index, generator in enumerate(node.generators):
            if index:
                self.visit(generator.iter)
            for condition in generator.ifs:
                self.visit(condition)
        if isinstance(node, ast.DictComp):
            self.visit(node.key)
            self.visit(node.value)
        else:
            self.visit(node.elt)
        self._local = outer

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node)

    def visit_SetComp(self, node: ast.SetComp) -> None:
        self._comprehension(node)

    def visit_GeneratorExp(self, node: ast.GeneratorExp) -> None:
        self._comprehension(node)

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node)


def module_scope_reads(statement: ast.stmt) -> list[Use]:
    """Everything ``statement`` reads from module scope, in visiting order."""
    reader = _ModuleScopeReads()
    reader.visit(statement)
    return reader.uses
