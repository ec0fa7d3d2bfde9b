"""Rendering results for people (rich) and for scripts (JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from buildprint.build.planner import Decision
from buildprint.build.runner import Outcome
from buildprint.signature.canonical import CanonicalValue
from buildprint.signature.diff import ABSENT, Change, changed_paths
from buildprint.signature.manifest import Manifest

__all__ = [
    "changes_tree",
    "decision_json",
    "dump_json",
    "manifest_table",
    "outcome_json",
    "summary_table",
]

_STYLE = {
    "reuse": "green",
    "reused": "green",
    "fetch": "cyan",
    "fetched": "cyan",
    "build": "yellow",
    "built": "yellow",
    "pending": "magenta",
    "failed": "bold red",
}


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def decision_json(decision: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": decision.node.name,
        "version": decision.node.version,
        "signature": decision.signature,
        "action": decision.action,
        "changed": changed_paths(decision.changes),
        "reason": decision.reason,
    }
    if decision.pending_on:
        out["pending_on"] = decision.pending_on
    if decision.closest:
        out["closest"] = decision.closest
    return out


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    out = decision_json(outcome.decision)
    out["action"] = outcome.done
    if outcome.record is not None:
        out["signature"] = outcome.record.signature
        out["wheel"] = outcome.record.artifacts[0].filename
    if outcome.error:
        out["error"] = outcome.error
    if outcome.log is not None:
        out["log"] = str(outcome.log)
    out["seconds"] = round(outcome.seconds, 3)
    return out


def _short(value: CanonicalValue | object, width: int = 60) -> str:
    if value is ABSENT:
        return "(absent)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def summary_table(rows: Sequence[Decision] | Sequence[Outcome], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("package", "version", "action", "signature", "why"):
        table.add_column(column, overflow="fold")
    for row in rows:
        decision = row.decision if isinstance(row, Outcome) else row
        action = row.done if isinstance(row, Outcome) else row.action
        signature = (
            row.record.signature if isinstance(row, Outcome) and row.record else decision.signature
        )
        why = decision.reason
        changed = changed_paths(decision.changes)
        if changed:
            why += ": " + ", ".join(changed)
        if isinstance(row, Outcome) and row.error:
            why = row.error.splitlines()[0] if row.error else why
        table.add_row(
            decision.node.name,
            decision.node.version,
            f"[{_STYLE.get(action, '')}]{action}[/]",
            (signature or "-")[:16],
            why,
        )
    return table


def changes_tree(label: str, changes: Sequence[Change]) -> Tree:
    tree = Tree(label)

    def add(node: Tree, change: Change) -> None:
        branch = node.add(f"[bold]{change.path}[/]: {_short(change.old)} → {_short(change.new)}")
        for child in change.children:
            add(branch, child)

    for change in changes:
        add(tree, change)
    if not changes:
        tree.add("no differences")
    return tree


def manifest_table(manifest: Manifest) -> Table:
    table = Table(
        title=f"{manifest.package.name} {manifest.package.version}  signature {manifest.signature}"
        f"  (scheme {manifest.scheme})",
        title_justify="left",
    )
    table.add_column("component")
    table.add_column("digest")
    table.add_column("value", overflow="fold")
    for name, component in manifest.components.items():
        table.add_row(name, component.digest[:16], _short(component.value, 100))
    return table


def print_console() -> Console:
    return Console(soft_wrap=False)
