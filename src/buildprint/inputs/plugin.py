"""The ``plugin`` component: an AST-canonical digest of the hook code that acts on a package.

Only what a hook can reach counts: the hooks themselves, the project-local functions, classes
and module-level values they use (followed across project-local imports), the import-time
statements of the modules involved, and the versions of the third-party distributions they
import. Comments, docstrings and formatting do not count. The rules are written out in
``docs/plugin-digest.md``; this module is stdlib-only so the digest can be checked under any
supported interpreter with nothing but ``PYTHONPATH=src``.
"""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import os
import re
import sys
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from buildprint.errors import InputError
from buildprint.signature.canonical import CanonicalValue, digest_value

__all__ = [
    "CANONICAL_STEPS",
    "HOOK_NAMES",
    "IMPORT_TIME",
    "ForgetStringPrefixes",
    "JoinFStringLiterals",
    "NormalizeImportLevels",
    "RemoveDocstrings",
    "canonical_statement",
    "function_reference",
    "module_file",
    "plugin_digest",
    "split_reference",
]

#: The per-package hooks a plugin module may define, in the order a build calls them.
HOOK_NAMES: tuple[str, ...] = ("signature", "update_env", "prepare_source", "build_wheel")

#: Key of a module's import-time statements in the ``code`` mapping; never a Python name.
IMPORT_TIME = "<module>"

_RECURSION_LIMIT = 6000
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)
#: Calls that read a module's namespace by name: the whole calling module counts.
_NAMESPACE_READERS = frozenset({"globals", "vars", "eval", "exec"})
#: Calls that import a module chosen at run time.
_DYNAMIC_IMPORTERS = frozenset({"__import__", "import_module"})


# --- canonical form -----------------------------------------------------------------------


class RemoveDocstrings(ast.NodeTransformer):
    """Drop docstrings: they document code, they do not act on a build.

    ``def signature(pkg, sig): "Pin the ABI."; sig.add("abi", "2")`` and the same function
    without the string are the same hook. A body left empty gets ``pass`` so the tree stays
    valid Python (``def f(): "doc"`` and ``def f(): pass`` are the same no-op).
    """

    def _strip(
        self, node: ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    ) -> None:
        body = node.body
        if (
            body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]

    def visit_Module(self, node: ast.Module) -> ast.AST:
        self._strip(node)
        self.generic_visit(node)
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        self._strip(node)
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        self._strip(node)
        self.generic_visit(node)
        return node

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        self._strip(node)
        self.generic_visit(node)
        return node


class ForgetStringPrefixes(ast.NodeTransformer):
    """Forget the ``u`` prefix of string literals: ``u"x"`` and ``"x"`` are the same string.

    The parser records it in ``Constant.kind``; nothing at run time can tell them apart.
    """

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        node.kind = None
        return node


class NormalizeImportLevels(ast.NodeTransformer):
    """Spell an absolute ``from x import y`` with ``level=0``, never ``None``.

    Both mean "absolute"; which one a tree carries depends on who built it, not on the code.
    """

    def visit_ImportFrom(self, node: ast.ImportFrom) -> ast.AST:
        node.level = node.level or 0
        return node


class JoinFStringLiterals(ast.NodeTransformer):
    """Spell each f-string's literal text as maximal non-empty pieces.

    The parser's split is not part of the code: Python 3.12.1 records ``f"{x:>{w}}"`` with an
    extra empty literal after ``{w}`` in the format spec, 3.11 and 3.13 do not. Dropping empty
    pieces and joining neighbours gives every version the same tree.
    """

    def visit_JoinedStr(self, node: ast.JoinedStr) -> ast.AST:
        self.generic_visit(node)
        values: list[ast.expr] = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                if not value.value:
                    continue
                last = values[-1] if values else None
                if isinstance(last, ast.Constant) and isinstance(last.value, str):
                    values[-1] = ast.Constant(value=last.value + value.value)
                    continue
            values.append(value)
        node.values = values
        return node


#: The canonicalization, in order. Comments and formatting need no step: the AST has none.
#: Type annotations are kept on purpose: dataclasses, pydantic and ``typing.get_type_hints``
#: act on them at run time, so an annotation edit can change what a hook does.
CANONICAL_STEPS: tuple[type[ast.NodeTransformer], ...] = (
    RemoveDocstrings,
    ForgetStringPrefixes,
    NormalizeImportLevels,
    JoinFStringLiterals,
)


def _canonical_tree(tree: ast.Module) -> ast.Module:
    for step in CANONICAL_STEPS:
        tree = step().visit(tree)
    return tree


def _encode_constant(value: object) -> CanonicalValue:
    """Constants as canonical JSON; non-JSON scalars as ``{"type": "repr"}`` (repr is stable)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if value is Ellipsis:
        return {"Ellipsis": True}
    if isinstance(value, float | complex):
        return {type(value).__name__: repr(value)}
    raise TypeError(f"unexpected constant in syntax tree: {value!r}")


def _encode(node: object) -> CanonicalValue:
    """A version-stable serialization of a syntax tree.

    ``ast.dump`` changes between Python versions (3.12 added ``type_params`` to every def, 3.13
    added ``TypeVar.default_value``). Here a node is ``[type name, {field: value}]`` where
    fields that are absent, ``None`` or empty are left out: new optional fields a version adds
    vanish, and within one version a field is never both ``None``-able and a list, so leaving
    them out loses nothing. Positions (``lineno``, ``col_offset``) are attributes, not fields,
    and never appear.
    """
    if isinstance(node, ast.AST):
        fields: dict[str, CanonicalValue] = {}
        for name in node._fields:
            value = getattr(node, name, None)
            if value is None or (isinstance(value, list) and not value):
                continue
            fields[name] = _encode(value)
        return [type(node).__name__, fields]
    if isinstance(node, list):
        return [_encode(item) for item in node]
    return _encode_constant(node)


def canonical_statement(statement: ast.stmt) -> CanonicalValue:
    """The canonical, version-stable form of one (already canonicalized) statement."""
    return _encode(statement)


# --- scopes: which names a statement reads from its module --------------------------------


@dataclass(frozen=True)
class _NameUse:
    """``name.attr1.attr2`` read from module scope (``attrs`` empty: the bare value)."""

    name: str
    attrs: tuple[str, ...] = ()


@dataclass(frozen=True)
class _NestedImport:
    """An import statement inside a function or class body, run when the code runs."""

    node: ast.Import | ast.ImportFrom


@dataclass(frozen=True)
class _DynamicImport:
    """``importlib.import_module(x)`` / ``__import__(x)``; ``module`` is None unless a literal."""

    module: str | None


@dataclass(frozen=True)
class _NamespaceRead:
    """``globals()``, ``vars()``, ``eval``, ``exec``: the module's names are read by string."""


_Use = _NameUse | _NestedImport | _DynamicImport | _NamespaceRead


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


def _alias_binding(alias: ast.alias, node: ast.Import | ast.ImportFrom) -> str | None:
    if alias.name == "*":
        return None
    if alias.asname:
        return alias.asname
    return alias.name.split(".")[0] if isinstance(node, ast.Import) else alias.name


def _bound_names(nodes: list[ast.stmt], *, mutations: bool = False) -> set[str]:
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
            names.update(n for a in node.names if (n := _alias_binding(a, node)) is not None)
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


def _call_name(func: ast.expr) -> str | None:
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
        self.uses: list[_Use] = []
        self._local: frozenset[str] = frozenset()

    # names and attribute chains
    def visit_Name(self, node: ast.Name) -> None:
        if node.id not in self._local:
            self.uses.append(_NameUse(node.id))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        base, attrs = _attribute_chain(node)
        if isinstance(base, ast.Name):
            if base.id not in self._local:
                self.uses.append(_NameUse(base.id, attrs))
        else:
            self.visit(base)

    def visit_Call(self, node: ast.Call) -> None:
        name = _call_name(node.func)
        if name in _NAMESPACE_READERS and name not in self._local:
            self.uses.append(_NamespaceRead())
        elif name in _DYNAMIC_IMPORTERS and name not in self._local:
            first = node.args[0] if node.args else None
            literal = (
                first.value
                if isinstance(first, ast.Constant) and isinstance(first.value, str)
                else None
            )
            self.uses.append(_DynamicImport(literal))
        self.generic_visit(node)

    # imports inside functions bind locals; what they import is still a dependency
    def visit_Import(self, node: ast.Import) -> None:
        self.uses.append(_NestedImport(node))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.uses.append(_NestedImport(node))

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
        local = _bound_names(body) | {a.arg for a in every_arg}
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


def _module_scope_reads(statement: ast.stmt) -> list[_Use]:
    reader = _ModuleScopeReads()
    reader.visit(statement)
    return reader.uses


# --- project-local modules ----------------------------------------------------------------


def split_reference(reference: str, *, file: str | Path | None = None) -> tuple[str, str]:
    """Split ``"module:function"`` (the form of ``host-hook``), refusing anything else."""
    module, sep, function = reference.partition(":")
    if not sep or not _IDENTIFIER.match(function):
        raise InputError(
            f"function reference {reference!r} must look like 'package.module:function'", file=file
        )
    _check_module_name(module, file=file)
    return module, function


def _check_module_name(module: str, *, file: str | Path | None = None) -> None:
    if not module or not all(_IDENTIFIER.match(part) for part in module.split(".")):
        raise InputError(f"{module!r} is not a dotted Python module name", file=file)


def _local_path(project_root: Path, module: str) -> Path | None:
    """The file of a project-local module: ``a/b.py`` or ``a/b/__init__.py``; None if neither."""
    base = project_root.joinpath(*module.split("."))
    for candidate in (base.with_name(base.name + ".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def module_file(project_root: Path, module: str) -> Path:
    """The file of plugin module ``module`` inside ``project_root``, or InputError naming it."""
    _check_module_name(module)
    path = _local_path(project_root, module)
    if path is None:
        relative = Path(*module.split("."))
        raise InputError(
            f"plugin module {module!r} not found: no {relative}.py or "
            f"{relative / '__init__.py'} in the project",
            file=project_root / f"{relative}.py",
        )
    return path


@dataclass
class _Module:
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
    return _call_name(node) in _INERT if isinstance(node, ast.Name | ast.Attribute) else False


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


def _parse_module(name: str, path: Path, is_package: bool) -> _Module:
    try:
        source = path.read_bytes()
        tree = _canonical_tree(ast.parse(source, filename=str(path)))
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
    module = _Module(name=name, path=path, is_package=is_package)
    for statement in tree.body:
        if _is_main_guard(statement):
            continue
        if isinstance(statement, ast.ImportFrom) and statement.module == "__future__":
            module.import_time.append(statement)  # a compiler switch for the whole module
            continue
        if isinstance(statement, ast.ImportFrom) and any(a.name == "*" for a in statement.names):
            module.star_imports.append(statement)
        names = _bound_names([statement], mutations=True)
        for bound in sorted(names):
            module.bindings.setdefault(bound, []).append(statement)
        if not names or _acts_at_import(statement):
            module.import_time.append(statement)
    return module


def _import_nodes(statement: ast.stmt) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements that run when ``statement`` runs (nested scopes excluded)."""
    stack: list[ast.AST] = [statement]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif not isinstance(node, _SCOPES):
            stack.extend(ast.iter_child_nodes(node))


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


def _canonical_distribution(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


class _Reachability:
    """Walks from the hooks to everything they can reach, recording code and distributions."""

    def __init__(self, project_root: Path) -> None:
        self.root = project_root
        self.code: dict[str, str] = {}
        self.third_party: dict[str, CanonicalValue] = {}
        self._modules: dict[str, _Module | None] = {}
        self._seen_names: set[tuple[str, str]] = set()
        self._seen_uses: set[tuple[str, str, tuple[str, ...]]] = set()
        self._touched: set[str] = set()
        self._whole: set[str] = set()
        self._distributions: dict[str, list[str]] | None = None

    # modules -------------------------------------------------------------------------------
    def _packages_distributions(self) -> dict[str, list[str]]:
        if self._distributions is None:
            self._distributions = _installed_distributions(_path_state())
        return self._distributions

    def is_local(self, dotted: str) -> bool:
        """Whether ``import dotted`` finds a module in the project (project root first)."""
        if _local_path(self.root, dotted) is not None:
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

    def module(self, dotted: str) -> _Module | None:
        """The parsed local module ``dotted`` (None when it is not local)."""
        if dotted not in self._modules:
            path = _local_path(self.root, dotted)
            if path is not None:
                self._modules[dotted] = _parse_module(dotted, path, path.name == "__init__.py")
            elif self.is_local(dotted):
                self._modules[dotted] = _Module(name=dotted, path=None, is_package=True)
            else:
                self._modules[dotted] = None
        return self._modules[dotted]

    def submodules(self, package: _Module) -> list[str]:
        folder = self.root.joinpath(*package.name.split("."))
        names = set()
        for child in folder.iterdir():
            stem = child.name[:-3] if child.name.endswith(".py") else child.name
            if _IDENTIFIER.match(stem) and (child.suffix == ".py" or child.is_dir()):
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
            self.third_party[_canonical_distribution(distribution)] = version

    def absolute(self, origin: _Module, node: ast.ImportFrom) -> str:
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
                    for node in _import_nodes(statement):
                        self.touch_import(module, node)

    def touch_import(self, origin: _Module, node: ast.Import | ast.ImportFrom) -> None:
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
    def name(self, module: _Module, name: str, attrs: tuple[str, ...] = ()) -> None:
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
            for node in _import_nodes(statement):
                for alias in node.names:
                    if _alias_binding(alias, node) == name:
                        self.follow_alias(module, node, alias, attrs)

    def follow_alias(
        self,
        origin: _Module,
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
    def trace(self, module: _Module, statement: ast.stmt) -> None:
        """Follow everything a top-level statement of ``module`` reads."""
        for use in _module_scope_reads(statement):
            if isinstance(use, _NameUse):
                self.name(module, use.name, use.attrs)
            elif isinstance(use, _NamespaceRead):
                self.whole(module.name)
            elif isinstance(use, _DynamicImport):
                self.dynamic_import(module, use.module)
            elif isinstance(use, _NestedImport):
                self.nested_import(module, use.node, top_level=statement)

    def nested_import(
        self, module: _Module, node: ast.Import | ast.ImportFrom, *, top_level: ast.stmt
    ) -> None:
        if node is top_level or any(node is s for s in _import_nodes(top_level)):
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

    def dynamic_import(self, module: _Module, target: str | None) -> None:
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
            if _IDENTIFIER.match(stem) and _local_path(self.root, stem) is not None:
                self.whole(stem)


def _reach(
    project_root: Path, module: str, hooks: Collection[str], *, required: bool
) -> _Reachability:
    path = module_file(project_root, module)
    reach = _Reachability(project_root)
    plugin = reach.module(module)
    assert plugin is not None  # module_file found it
    for hook in sorted(set(hooks)):
        if not _IDENTIFIER.match(hook):
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
