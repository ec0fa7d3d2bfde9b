"""Rendering results for people (rich) and for scripts (JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from buildprint.builder.outcome import Outcome
from buildprint.plan.decision import Decision, PlanEntry
from buildprint.signature.canonical import CanonicalValue
from buildprint.signature.diff import ABSENT, PLUGIN_HOOKS, Change
from buildprint.signature.manifest import DISCOVERED, Manifest
from buildprint.states import ACTIONS, OUTCOMES
from buildprint.store.record import ActionRecord

if TYPE_CHECKING:
    from buildprint.engine import Audit, RemoteContents, Verification

__all__ = [
    "PIPED_WIDTH",
    "audit_json",
    "audit_text",
    "changes_tree",
    "console",
    "decision_json",
    "dump_json",
    "duration",
    "manifest_table",
    "outcome_json",
    "outcome_why",
    "record_json",
    "remote_json",
    "remote_row",
    "short_paths",
    "style",
    "summary_counts",
    "summary_table",
    "verification_json",
    "verification_text",
    "why",
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


#: The width output is laid out in when it does not go to a terminal (a pipe, a file, a CI
#: log): wide enough that rich never wraps a table cell, a tree line or a plain line, so each
#: row stays one line for scripts and grep. A table is only as wide as its cells need.
PIPED_WIDTH = 10_000


def console(*, stderr: bool = False) -> Console:
    """The console the CLI prints to (stdout, or stderr): the terminal's width on a terminal,
    :data:`PIPED_WIDTH` elsewhere (rich would use 80 columns, or ``COLUMNS``, and wrap
    names in the middle)."""
    made = Console(stderr=stderr, soft_wrap=False)
    if not made.is_terminal:
        made.width = PIPED_WIDTH
    return made


def dump_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False)


def _entry(item: Decision | PlanEntry) -> PlanEntry:
    return item.entry() if isinstance(item, Decision) else item


def decision_json(decision: Decision | PlanEntry) -> dict[str, Any]:
    entry = _entry(decision)
    out: dict[str, Any] = {
        "name": entry.name,
        "version": entry.version,
        "signature": entry.signature,
        "action": entry.action,
        "changed": list(entry.changed),
        "reason": entry.reason,
    }
    if entry.pending_on:
        out["pending_on"] = list(entry.pending_on)
    if entry.closest:
        out["closest"] = entry.closest
    return out


def outcome_json(outcome: Outcome) -> dict[str, Any]:
    out = decision_json(outcome.decision)
    out["action"] = outcome.done
    out["reason"] = outcome.reason
    if outcome.record is not None:
        out["signature"] = outcome.record.manifest_signature
        out["wheel"] = outcome.record.artifacts[0].filename
        if outcome.record.variant_of is not None:  # stored under a key of its own
            out["variant"] = outcome.record.signature
    if outcome.error:
        out["error"] = outcome.error
    if outcome.log is not None:
        out["log"] = str(outcome.log)
    out["seconds"] = round(outcome.seconds, 3)
    out["worker"] = outcome.worker
    if outcome.worker_seconds is not None:
        out["worker_seconds"] = round(outcome.worker_seconds, 3)
    if outcome.queued_seconds is not None:
        out["queued_seconds"] = round(outcome.queued_seconds, 3)
    return out


def _short(value: CanonicalValue | object, width: int = 60) -> str:
    if value is ABSENT:
        return "(absent)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


def style(action: str) -> str:
    """The rich style of an action or outcome (``""`` for an unknown one)."""
    return _STYLE.get(action, "")


def duration(seconds: float) -> str:
    """``0.4s``, ``12.0s``, ``3m05s``, ``2h07m``: short enough for a status line."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def short_paths(paths: Sequence[str], width: int) -> str:
    """``paths`` joined by commas within about ``width`` characters, the rest counted
    (``source, env/CFLAGS, +3 more``), so one long list does not push the line off screen."""
    shown: list[str] = []
    used = 0
    for index, path in enumerate(paths):
        rest = len(paths) - index - 1
        tail = len(f", +{rest} more") if rest else 0
        cost = len(path) + (2 if shown else 0)
        if shown and used + cost + tail > width:
            return ", ".join(shown) + f", +{len(paths) - index} more"
        shown.append(path if len(path) <= width else path[: max(1, width - 1)] + "…")
        used += cost
    return ", ".join(shown)


def why(decision: Decision | PlanEntry, width: int | None = None) -> str:
    """Why a package is reused, fetched or built: the reason, then the changed component
    paths (all of them, or as many as fit in ``width``)."""
    entry = _entry(decision)
    if not entry.changed:
        return entry.reason
    changed = list(entry.changed)
    paths = ", ".join(changed) if width is None else short_paths(changed, width)
    return f"{entry.reason}: {paths}" if entry.reason else paths


def outcome_why(outcome: Outcome, width: int | None = None) -> str:
    """Why, for a finished package: the failure (first line, and where its log is) for a
    failed one, else the reason it was reused, fetched or built."""
    if outcome.done != "failed":
        entry = outcome.decision.entry()
        return why(replace(entry, reason=outcome.reason), width)
    lines = (outcome.error or "").strip().splitlines()
    message = lines[0] if lines else outcome.decision.reason or "failed"
    if outcome.log is not None:
        message += f" (log: {outcome.log})"
    return message


def summary_counts(rows: Sequence[Decision | PlanEntry] | Sequence[Outcome]) -> dict[str, int]:
    """Packages per outcome (build) or per action (plan); every known kind is present."""
    done = [row.done if isinstance(row, Outcome) else row.action for row in rows]
    kinds = OUTCOMES if rows and isinstance(rows[0], Outcome) else ACTIONS
    counts: dict[str, int] = dict.fromkeys(kinds, 0)
    for kind in done:
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def summary_table(rows: Sequence[Decision | PlanEntry] | Sequence[Outcome], title: str) -> Table:
    """One row per package: what was (or would be) done and why; counts in the caption."""
    finished = bool(rows) and isinstance(rows[0], Outcome)
    counts = summary_counts(rows)
    table = Table(
        title=title,
        title_justify="left",
        caption=", ".join(
            f"[{style(k)}]{n} {k}[/]" if n else f"{n} {k}" for k, n in counts.items()
        ),
        caption_justify="left",
    )
    for column in ("package", "version", "action", "signature"):
        table.add_column(column, overflow="fold")
    if finished:
        table.add_column("time", justify="right")
    table.add_column("why", overflow="fold")
    for row in rows:
        entry = _entry(row.decision if isinstance(row, Outcome) else row)
        action = row.done if isinstance(row, Outcome) else entry.action
        where = f" on {row.worker}" if isinstance(row, Outcome) and row.worker else ""
        signature = (
            row.record.signature if isinstance(row, Outcome) and row.record else entry.signature
        )
        cells = [
            entry.name,
            entry.version,
            f"[{style(action)}]{action}[/]{escape(where)}",
            (signature or "-")[:16],
        ]
        if isinstance(row, Outcome):
            cells.append(duration(row.seconds))
        reason = outcome_why(row) if isinstance(row, Outcome) else why(entry)
        cells.append(escape(reason))  # a reason's [signature] is text, not markup
        table.add_row(*cells)
    return table


def changes_tree(label: str, changes: Sequence[Change]) -> Tree:
    tree = Tree(Text(label))

    def add(node: Tree, change: Change) -> None:
        branch = node.add(Text.assemble((change.path, "bold"), ": ", _change_text(change)))
        for child in change.children:
            add(branch, child)

    for change in changes:
        add(tree, change)
    if not changes:
        tree.add("no differences")
    return tree


def _change_text(change: Change) -> str:
    """What one change says after its path: its note with short digests when it has one
    (a plugin hook's code), else ``old → new``."""
    if change.path.startswith(f"{DISCOVERED}/"):  # a system file's digests, shortened
        return f"{_short(change.old, 13)} → {_short(change.new, 13)}"
    if change.path == "plugin":  # a plugin added or dropped: which module, which hooks
        return f"{_plugin_summary(change.old)} → {_plugin_summary(change.new)}"
    if change.note:
        if change.old is ABSENT or change.new is ABSENT:
            return change.note
        return f"{change.note} ({_short(change.old, 9)} → {_short(change.new, 9)})"
    return f"{_short(change.old)} → {_short(change.new)}"


def _plugin_summary(value: CanonicalValue | object) -> str:
    """A ``plugin`` value in words: ``plugins.alpha (hooks update_env, signature)``."""
    if value is ABSENT or value is None:
        return "(none)"
    if not isinstance(value, dict) or not isinstance(value.get("module"), str):
        return _short(value)
    module = value["module"]
    code = value.get("code")
    names = (
        [key.partition(":")[2] for key in code if key.startswith(f"{module}:")]
        if isinstance(code, dict)
        else []
    )
    hooks = [name for name in PLUGIN_HOOKS if name in names]
    return f"{module} (hooks {', '.join(hooks)})" if hooks else f"{module} (no hooks)"


def manifest_table(manifest: Manifest) -> Group:
    """``show``: a heading line (name, version, the whole signature, scheme), then a row per
    component. The heading is a line of its own, not the table's title, which rich would wrap
    to the table's width, splitting the signature a script copies."""
    heading = Text(
        f"{manifest.package.name} {manifest.package.version}  signature {manifest.signature}"
        f"  (scheme {manifest.scheme})"
    )
    table = Table()
    table.add_column("component")
    table.add_column("digest")
    table.add_column("value", overflow="fold")
    for name, component in manifest.components.items():
        table.add_row(name, component.digest[:16], _short(component.value, 100))
    if manifest.discovered is not None:
        inputs = manifest.discovered_inputs
        table.add_row(
            f"{DISCOVERED} (checked, not signed)",
            manifest.discovered.digest[:16],
            f"{len(inputs)} system files: " + _short(", ".join(inputs), 100) if inputs else "none",
        )
    return Group(heading, table)


def record_json(record: ActionRecord) -> dict[str, Any]:
    """One build of the local store, as ``cache ls --json`` lists it."""
    return {
        "name": record.name,
        "version": record.version,
        "signature": record.signature,
        "created": record.created,
        "wheels": [a.filename for a in record.artifacts],
    }


def remote_json(contents: RemoteContents) -> dict[str, Any]:
    """One remote's entries, as ``cache ls --remote --json`` lists them."""
    return {
        "url": contents.url,
        "records": [
            {
                "signature": e.signature,
                "size": e.size,
                "modified": e.modified,
                "verified": e.record is not None,
                "name": e.record.name if e.record else None,
                "version": e.record.version if e.record else None,
                "created": e.record.created if e.record else None,
                "wheels": [a.filename for a in e.record.artifacts] if e.record else [],
                "problem": e.problem,
            }
            for e in contents.entries
        ],
    }


def remote_row(row: dict[str, Any]) -> str:
    """One line of ``cache ls --remote``: signature, size, date, and what it holds."""
    what = (
        f"{row['name']} {row['version']} {' '.join(row['wheels'])}"
        if row["verified"]
        else ("(not verified)" if row["problem"] else "")
    )
    size = row["size"] if row["size"] is not None else "?"
    return f"  {row['signature'][:16]} {size} {row['modified'] or '?'} {what}".rstrip()


def _folders(paths: Sequence[str], depth: int = 6) -> list[tuple[str, int]]:
    """How many of ``paths`` lie in each folder, folders cut at ``depth`` components."""
    counts: dict[str, int] = {}
    for path in paths:
        folder = "/".join(path.split("/")[: depth + 1][:-1]) or "/"
        counts[folder] = counts.get(folder, 0) + 1
    return sorted(counts.items())


def audit_json(audit: Audit) -> dict[str, Any]:
    """``audit --json``: the build, what it read by group, and what is not checked."""
    record = audit.record
    out: dict[str, Any] = {
        "name": record.name,
        "version": record.version,
        "signature": record.manifest_signature,
        "created": record.created,
        "checked": audit.checked,
        "note": audit.note,
        "discovered": record.discovered or {},
        "moved": [{"path": p, "old": old, "new": new} for p, old, new in audit.moved],
        "unchecked": [{"path": p, "why": why} for p, why in _unchecked(audit)],
    }
    if record.variant_of is not None:
        out["variant"] = record.signature
    if audit.reads is not None:
        out["reads"] = audit.reads.to_json()
    return out


def _unchecked(audit: Audit) -> list[tuple[str, str]]:
    """What the build read that is neither declared nor checked, and why."""
    reads = audit.reads
    out: list[tuple[str, str]] = []
    if reads is not None:
        out += [
            (path, f"ignored by discovered-ignore {pattern!r}")
            for path, pattern in reads.ignored.items()
            if pattern in audit.ignore
        ]
    if not audit.checked:
        inputs = reads.discovered if reads is not None else audit.record.discovered or {}
        out += [(path, "discovered = false") for path in inputs]
    return sorted(out)


def audit_text(audit: Audit) -> str:
    """``audit``: what the build read, a group a paragraph."""
    record, reads = audit.record, audit.reads
    lines = [
        f"{record.name} {record.version}: built {record.created}, signature "
        f"{record.manifest_signature[:16]}"
        + (f" (variant {record.signature[:16]})" if record.variant_of else "")
        + (f"; traced by {reads.tracer}" if reads is not None and reads.tracer else "")
    ]
    if audit.note:
        lines.append(f"note: {audit.note}")
    moved = {path: new for path, _old, new in audit.moved}
    if reads is not None:
        lines += ["", f"source tree ({len(reads.source)} files)"]
        lines += [f"  {path}" for path in reads.source]
        lines += ["", f"build environment ({len(reads.environment)} files, in its signature)"]
        lines += [f"  {folder}/  {n} files" for folder, n in _folders(reads.environment)]
        lines += ["", f"toolchain ({len(reads.toolchain)}, identified in its signature)"]
        lines += [f"  {path}" for path in reads.toolchain]
    discovered = record.discovered if record.discovered is not None else {}
    if reads is not None and not discovered:
        discovered = dict(reads.discovered)
    state = "checked before reuse" if audit.checked else "recorded, not checked"
    lines += ["", f"discovered system files ({len(discovered)}, {state})"]
    for path, digest in sorted(discovered.items()):
        now = f"  changed since: now {moved[path][:12]}" if path in moved else ""
        lines.append(f"  {path}  {digest[:12]}{now}")
    if reads is not None:
        declared = sorted(n for n, how in reads.variables.items() if how == "declared")
        fixed = sorted(n for n, how in reads.variables.items() if how != "declared")
        lines += ["", "variables (what the build was given; what it read of them is not seen)"]
        lines.append(f"  declared: {', '.join(declared) or '(none)'}")
        lines.append(f"  set by buildprint: {', '.join(fixed)}")
        lines += ["", f"libraries the programs loaded ({len(reads.loaded)}, not checked)"]
        lines += [f"  {path}" for path in reads.loaded]
        builtin = sorted(p for p, pattern in reads.ignored.items() if pattern not in audit.ignore)
        lines += ["", f"runtime files every build reads ({len(builtin)}, not checked)"]
        lines += [f"  {path}" for path in builtin]
    unchecked = _unchecked(audit)
    lines += ["", f"neither declared nor checked: {len(unchecked) or 'nothing'}"]
    lines += [f"  ! {path}  ({why})" for path, why in unchecked]
    return "\n".join(lines)


def verification_json(result: Verification) -> dict[str, Any]:
    return {
        "name": result.name,
        "version": result.version,
        "signature": result.signature,
        "wheel": result.wheel,
        "reproducible": result.reproducible,
        "skipped": result.skipped or None,
        "differences": [
            {
                "member": d.member,
                "change": d.change,
                "diff": d.diff or None,
                "sizes": list(d.sizes) if d.sizes else None,
                "digests": list(d.digests) if d.digests else None,
            }
            for d in result.differences
        ],
    }


def verification_text(results: Sequence[Verification]) -> str:
    """``verify``: a line per package, then each differing member (a diff for text)."""
    lines: list[str] = []
    for result in results:
        head = f"{result.name} {result.version}"
        if result.skipped:
            lines.append(f"{head}: skipped: {result.skipped}")
            continue
        if result.reproducible:
            lines.append(f"{head}: reproducible ({result.wheel})")
            continue
        count = len(result.differences)
        lines.append(f"{head}: NOT reproducible: {count} member(s) of {result.wheel} differ")
        for d in result.differences:
            if d.change in ("added", "removed", "mode"):
                what = {"added": "only in the rebuild", "removed": "only in the stored wheel"}
                lines.append(f"  {d.member}: {what.get(d.change, 'executable bit differs')}")
            elif d.diff:
                lines.append(f"  {d.member}: text differs")
                lines += [f"    {line}" for line in d.diff.rstrip("\n").splitlines()]
            else:
                assert d.sizes is not None and d.digests is not None
                lines.append(
                    f"  {d.member}: binary differs: {d.sizes[0]} bytes {d.digests[0][:12]} → "
                    f"{d.sizes[1]} bytes {d.digests[1][:12]}"
                )
    return "\n".join(lines)
