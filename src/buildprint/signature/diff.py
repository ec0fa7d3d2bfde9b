"""Component-level diff of two manifests, recursing into dependencies' manifests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from buildprint.signature.canonical import CanonicalValue
from buildprint.signature.manifest import DISCOVERED, Manifest

__all__ = [
    "ABSENT",
    "KEYED_COMPONENTS",
    "PLUGIN_HOOKS",
    "Change",
    "changed_paths",
    "diff",
    "plugin_path",
]

#: Components whose values are collections of independent entries: their changes are reported
#: per entry as ``component/key`` (``env/CFLAGS``, ``patches/0002-fix.patch``, ``deps/numpy``).
KEYED_COMPONENTS = frozenset(
    {"patches", "env", "build-deps", "deps", "toolchain", "host", "configs", "extra"}
)


#: The per-package hooks a plugin module may define (``inputs.plugin.HOOK_NAMES``; this layer
#: imports no other): a changed ``plugin`` is reported per hook as ``plugin/hooks/NAME``.
PLUGIN_HOOKS = ("signature", "update_env", "prepare_source", "build_wheel")


class _Absent:
    """Marks a side on which a component or key does not exist."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()

Side = CanonicalValue | _Absent
ManifestLookup = Callable[[str], Manifest | None]


@dataclass(frozen=True)
class Change:
    """One difference: ``old`` -> ``new`` at ``path``; ``children`` explain a dependency;
    ``note`` says in words what changed where the values are digests (a plugin hook's code)."""

    path: str
    old: Side
    new: Side
    children: tuple[Change, ...] = field(default=())
    note: str = ""

    def to_json(self) -> dict[str, CanonicalValue]:
        out: dict[str, CanonicalValue] = {
            "path": self.path,
            "old": None if isinstance(self.old, _Absent) else self.old,
            "new": None if isinstance(self.new, _Absent) else self.new,
        }
        if isinstance(self.old, _Absent):
            out["added"] = True
        if isinstance(self.new, _Absent):
            out["removed"] = True
        if self.children:
            out["because"] = [c.to_json() for c in self.children]
        return out


def _dep_signature(manifest: Manifest, dep: str) -> str | None:
    deps = manifest.recorded.get("deps")
    if isinstance(deps, dict):
        entry = deps.get(dep)
        if isinstance(entry, dict) and isinstance(entry.get("signature"), str):
            return entry["signature"]  # type: ignore[return-value]
    return None


def diff(
    old: Manifest,
    new: Manifest,
    lookup: ManifestLookup | None = None,
    *,
    _seen: frozenset[str] = frozenset(),
) -> list[Change]:
    """Differences from ``old`` to ``new``, in component order.

    With ``lookup`` (signature -> manifest), a changed ``deps/NAME`` entry carries the diff of
    the dependency's own manifests as ``children``.
    """
    changes: list[Change] = []
    if old.scheme != new.scheme:
        changes.append(Change("scheme", old.scheme, new.scheme))
    for name in sorted(set(old.components) | set(new.components)):
        a = old.components.get(name)
        b = new.components.get(name)
        if a is not None and b is not None and a.digest == b.digest:
            continue
        a_value: Side = ABSENT if a is None else a.value
        b_value: Side = ABSENT if b is None else b.value
        if name == "plugin" and isinstance(a_value, dict) and isinstance(b_value, dict):
            changes.extend(_plugin_changes(a_value, b_value))
        elif name in KEYED_COMPONENTS and isinstance(a_value, dict) and isinstance(b_value, dict):
            for key in sorted(set(a_value) | set(b_value)):
                av: Side = a_value.get(key, ABSENT)
                bv: Side = b_value.get(key, ABSENT)
                if av == bv:
                    continue
                children: tuple[Change, ...] = ()
                if name == "deps" and lookup is not None:
                    children = _dependency_children(old, new, key, lookup, _seen)
                changes.append(Change(f"{name}/{key}", av, bv, children))
        else:
            changes.append(Change(name, a_value, b_value))
    # Two finished builds (a manifest being planned has no discovered part yet): the system
    # files they read, per path.
    if old.discovered and new.discovered and old.discovered.digest != new.discovered.digest:
        a_files, b_files = old.discovered_inputs, new.discovered_inputs
        for path in sorted(set(a_files) | set(b_files)):
            av, bv = a_files.get(path, ABSENT), b_files.get(path, ABSENT)
            if av != bv:
                changes.append(Change(f"{DISCOVERED}/{path}", av, bv))
    return changes


def plugin_path(module: str, entry: str) -> str:
    """The path of one entry of a ``plugin`` value's ``code`` (``"module:name"``): a hook of
    the package's plugin ``module`` is ``plugin/hooks/NAME``; anything else the hooks reach
    (a helper, a constant, a module's import-time statements ``<module>``, in any local module)
    is ``plugin/code/MODULE:NAME``."""
    owner, _, name = entry.partition(":")
    if owner == module and name in PLUGIN_HOOKS:
        return f"plugin/hooks/{name}"
    return f"plugin/code/{entry}"


def _plugin_changes(old: dict[str, CanonicalValue], new: dict[str, CanonicalValue]) -> list[Change]:
    """A changed ``plugin`` component, entry by entry (see docs/plugin-digest.md for its
    value): ``plugin/hooks/NAME`` and ``plugin/code/MODULE:NAME`` (code digests, each with a
    note in words), ``plugin/third-party/DIST`` (versions), ``plugin/module``. Hooks come
    first, then the code they reach, then the rest."""
    module = new.get("module", old.get("module"))
    module = module if isinstance(module, str) else ""
    first: list[Change] = []
    then: list[Change] = []
    rest: list[Change] = []
    for key in sorted(set(old) | set(new)):
        a: Side = old.get(key, ABSENT)
        b: Side = new.get(key, ABSENT)
        if a == b:
            continue
        if key in ("code", "third-party"):  # an absent mapping is an empty one
            a = {} if a is ABSENT else a
            b = {} if b is ABSENT else b
        if not (key in ("code", "third-party") and isinstance(a, dict) and isinstance(b, dict)):
            rest.append(Change(f"plugin/{key}", a, b))
            continue
        for entry in sorted(set(a) | set(b)):
            av: Side = a.get(entry, ABSENT)
            bv: Side = b.get(entry, ABSENT)
            if av == bv:
                continue
            if key == "third-party":
                rest.append(Change(f"plugin/third-party/{entry}", av, bv))
                continue
            path = plugin_path(module, entry)
            owner, _, name = entry.partition(":")
            verb = "added" if av is ABSENT else ("removed" if bv is ABSENT else "changed")
            if path.startswith("plugin/hooks/"):
                where = {"added": "to", "removed": "from"}.get(verb, "in")
                first.append(Change(path, av, bv, note=f"hook {name} {verb} {where} {owner}"))
                continue
            what = f"import-time code of {owner}" if name == "<module>" else f"{owner}.{name}"
            if verb != "changed":
                verb = "now reached from the hooks" if verb == "added" else "no longer reached"
            then.append(Change(path, av, bv, note=f"{what} {verb}"))
    return [*first, *then, *rest]


def _dependency_children(
    old: Manifest, new: Manifest, dep: str, lookup: ManifestLookup, seen: frozenset[str]
) -> tuple[Change, ...]:
    old_sig, new_sig = _dep_signature(old, dep), _dep_signature(new, dep)
    if old_sig is None or new_sig is None or old_sig == new_sig or new_sig in seen:
        return ()
    old_dep, new_dep = lookup(old_sig), lookup(new_sig)
    if old_dep is None or new_dep is None:
        return ()
    return tuple(diff(old_dep, new_dep, lookup, _seen=seen | {new_sig}))


def changed_paths(changes: Sequence[Change]) -> list[str]:
    """The ``changed`` list of the JSON contract: top-level paths, in order."""
    return [c.path for c in changes]
