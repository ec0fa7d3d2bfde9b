"""Component-level diff of two manifests, recursing into dependencies' manifests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from buildprint.signature.canonical import CanonicalValue
from buildprint.signature.manifest import Manifest

__all__ = ["ABSENT", "KEYED_COMPONENTS", "Change", "changed_paths", "diff"]

#: Components whose values are collections of independent entries: their changes are reported
#: per entry as ``component/key`` (``env/CFLAGS``, ``patches/0002-fix.patch``, ``deps/numpy``).
KEYED_COMPONENTS = frozenset(
    {"patches", "env", "build-deps", "deps", "toolchain", "host", "configs", "extra"}
)


class _Absent:
    """Marks a side on which a component or key does not exist."""

    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()

Side = CanonicalValue | _Absent
ManifestLookup = Callable[[str], Manifest | None]


@dataclass(frozen=True)
class Change:
    """One difference: ``old`` -> ``new`` at ``path``; ``children`` explain a dependency."""

    path: str
    old: Side
    new: Side
    children: tuple[Change, ...] = field(default=())

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
        if name in KEYED_COMPONENTS and isinstance(a_value, dict) and isinstance(b_value, dict):
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
    return changes


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
