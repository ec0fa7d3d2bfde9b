"""The package graph as ``plan --json`` lists it and ``buildprint graph`` draws it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from buildprint.plan.decision import PlanEntry

__all__ = ["build_order", "dot", "edges_json"]


def edges_json(entries: Sequence[PlanEntry]) -> list[dict[str, Any]]:
    """Every edge: dependent, dependency, kind (``build`` or ``install``) and mode."""
    return [
        {"dependent": entry.name, "dependency": dep, "kind": kind, "mode": mode}
        for entry in entries
        for dep, kind, mode in entry.edges
    ]


def dot(entries: Sequence[PlanEntry]) -> str:
    """The graph in Graphviz DOT: a node per package (its version and action), an arrow from
    each package to what it needs; install edges dashed."""
    lines = ["digraph buildprint {", "  rankdir=LR;", "  node [shape=box];"]
    for entry in entries:
        label = f"{entry.name}\\n{entry.version}\\n{entry.action}"
        lines.append(f"  {_id(entry.name)} [label={_quoted(label)}];")
    for entry in entries:
        for dep, kind, mode in entry.edges:
            style = "dashed" if kind == "install" else "solid"
            label = kind if kind == "install" else f"build ({mode})"
            lines.append(
                f"  {_id(entry.name)} -> {_id(dep)} [style={style}, label={_quoted(label)}];"
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


def build_order(entries: Sequence[PlanEntry]) -> str:
    """One ``name==version`` per line, each after everything it builds with."""
    return "".join(f"{entry.name}=={entry.version}\n" for entry in entries)


def _id(name: str) -> str:
    return _quoted(name)


def _quoted(text: str) -> str:
    # DOT's quoted strings escape '"' with a backslash; JSON's escaping is a superset.
    return json.dumps(text, ensure_ascii=False).replace("\\\\n", "\\n")
