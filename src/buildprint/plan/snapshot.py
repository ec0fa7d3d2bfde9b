"""Plan snapshots: a no-op ``plan`` in about the time it takes to stat its inputs.

A full plan reads settings, the lock, patches and plugins, runs ``signature`` hooks and
composes every manifest. When all of that ended in "reuse everything", the result is kept
with the *checks* it rests on: the state of every file and folder it read (its own inputs,
the files the hooks looked at, the store records it found, buildprint's own code), the
variables it read (as digests: values may be secrets) and the plugin distributions' versions.
The next plan with the same options re-checks those and, when nothing moved, prints the kept
result without opening anything else. Anything it cannot check — a hook that ran a
subprocess or opened a socket, a ranged requirement answered by an index, a source folder —
makes the plan *volatile*: no snapshot is kept, and every plan is a full one.

A file changed while the full plan ran could have been read before or after the change; a
snapshot is therefore not kept when any checked file's ctime (which no one can set back) is
not older than the start of the plan, the way git treats "racily clean" index entries.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from buildprint.fsio import stat_key, write_atomic
from buildprint.project.tracking import DIRECTORY
from buildprint.signature.canonical import digest_bytes, digest_value

__all__ = [
    "Checks",
    "PlanEntry",
    "PlanSnapshot",
    "discard_snapshot",
    "env_digest",
    "load_snapshot",
    "save_snapshot",
]

FORMAT = 1
# Timestamps of some file systems are coarser than the clock: a change this close to the
# start of the plan counts as made during it.
_RACY_MARGIN_NS = 50_000_000


@dataclass(frozen=True)
class PlanEntry:
    """One package's line of a plan, as ``plan`` prints it."""

    name: str
    version: str
    signature: str | None
    action: str
    changed: tuple[str, ...] = ()
    reason: str = ""
    pending_on: tuple[str, ...] = ()
    closest: str | None = None


def env_digest(environ: Mapping[str, str], name: str) -> str | None:
    """What a check keeps of a variable: the digest of its value, never the value. ``*``
    stands for the whole environment (code that iterated over it)."""
    if name == "*":
        return digest_value(sorted(environ.items()))
    value = environ.get(name)
    return None if value is None else digest_bytes(value.encode("utf-8", "surrogateescape"))


def _installed_version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


@dataclass
class Checks:
    """What a plan's result rests on."""

    files: dict[str, str | None] = field(default_factory=dict)  # path -> stat_key (None: absent)
    env: dict[str, str | None] = field(default_factory=dict)  # name -> env_digest
    versions: dict[str, str | None] = field(default_factory=dict)  # distribution -> version
    volatile: list[str] = field(default_factory=list)  # why it cannot be checked

    def note_file(self, path: str | os.PathLike[str]) -> None:
        key = os.path.abspath(path)
        if key not in self.files:
            self.files[key] = stat_key(key)

    def note_env(self, name: str, environ: Mapping[str, str]) -> None:
        self.env[name] = env_digest(environ, name)

    def note_version(self, distribution: str) -> None:
        self.versions[distribution] = _installed_version(distribution)

    def first_change(self, environ: Mapping[str, str]) -> str | None:
        """What differs now (``None``: nothing), cheapest checks first."""
        for name, digest in self.env.items():
            if env_digest(environ, name) != digest:
                return f"environment variable {name}"
        for path, state in self.files.items():
            now = DIRECTORY if state == DIRECTORY and os.path.isdir(path) else stat_key(path)
            if now != state:
                return path
        for distribution, recorded in self.versions.items():
            if _installed_version(distribution) != recorded:
                return f"distribution {distribution}"
        return None

    def changed_since(self, started_ns: int) -> str | None:
        """A checked file whose last change is not clearly older than ``started_ns``."""
        for path, state in self.files.items():
            if state in (None, DIRECTORY):
                continue
            if int(state.rsplit(":", 1)[1]) >= started_ns - _RACY_MARGIN_NS:
                return path
        return None


@dataclass
class PlanSnapshot:
    """A plan's result and what it rests on; ``key`` is the digest of the run's options."""

    key: str
    entries: list[PlanEntry]
    checks: Checks


def load_snapshot(path: Path) -> PlanSnapshot | None:
    """The kept snapshot, or ``None`` when there is none or it is unreadable (a snapshot only
    ever saves work; it never decides anything on its own)."""
    try:
        data: Any = json.loads(path.read_bytes())
        if data.get("format") != FORMAT:
            return None
        entries = [
            PlanEntry(
                **{
                    **entry,
                    "changed": tuple(entry["changed"]),
                    "pending_on": tuple(entry["pending_on"]),
                }
            )
            for entry in data["entries"]
        ]
        checks = Checks(**data["checks"])
        return PlanSnapshot(data["key"], entries, checks)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def save_snapshot(path: Path, snapshot: PlanSnapshot) -> None:
    data = {
        "format": FORMAT,
        "key": snapshot.key,
        "entries": [asdict(entry) for entry in snapshot.entries],
        "checks": asdict(snapshot.checks),
    }
    write_atomic(path, json.dumps(data, separators=(",", ":")).encode("utf-8"))


def discard_snapshot(path: Path) -> None:
    """Forget the kept plan (a full plan that cannot be kept must not leave an old one)."""
    path.unlink(missing_ok=True)
