"""Canonical form of plugin code: small named AST steps, then a version-stable serialization."""

from __future__ import annotations

import ast

from buildprint.signature.canonical import CanonicalValue

__all__ = [
    "CANONICAL_STEPS",
    "ForgetStringPrefixes",
    "JoinFStringLiterals",
    "NormalizeImportLevels",
    "RemoveDocstrings",
    "canonical_statement",
    "canonical_tree",
]


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


def canonical_tree(tree: ast.Module) -> ast.Module:
    """``tree`` with every step of :data:`CANONICAL_STEPS` applied, in order."""
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
