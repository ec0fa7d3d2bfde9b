"""Plan snapshots: a no-op ``plan`` in about the time it takes to stat its inputs.

A full plan reads settings, the lock, patches and plugins, runs ``signature`` hooks and
composes every manifest. When all of that ended in "reuse everything", the result is kept
with the *checks* it rests on: the state of every file and folder it read (its own inputs,
the files the hooks looked at, the local sdists an index chose and the pages and folders it
chose them from, the store records it found, buildprint's own code), the variables it read
(as digests: values may be secrets), what the hooks' host probes (``os.uname()``,
``os.cpu_count()`` …) returned (as digests) and the plugin distributions' versions. The next
plan with the same options re-checks those — a probe by calling it again — and, when nothing
moved, prints the kept result without opening anything else. Anything it cannot check — a
hook that ran a subprocess or opened a socket, a ranged requirement answered by an index, a
source folder — makes the plan *volatile*: no snapshot is kept, and every plan is a full one.

A file changed while the full plan ran could have been read before or after the change; a
snapshot is therefore not kept when any checked file's ctime (which no one can set back) is
not older than the start of the plan, the way git treats "racily clean" index entries.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from buildprint import __version__
from buildprint.fsio import stat_key, write_atomic
from buildprint.inputs.host import HOST_VARIABLE
from buildprint.inputs.patches import PatchFolders
from buildprint.options import Options
from buildprint.plan.decision import Decision, PlanEntry
from buildprint.plan.inputs import InputCollector
from buildprint.project.project import PROJECT_FILE, Project
from buildprint.project.tracking import DIRECTORY, is_content, probe_digest, state_now
from buildprint.resolve.index import PackageIndex, local_path
from buildprint.signature.canonical import digest_bytes, digest_value
from buildprint.signature.manifest import SCHEME
from buildprint.store.local import LocalStore

__all__ = [
    "Checks",
    "PlanSnapshot",
    "collect_checks",
    "discard_snapshot",
    "env_digest",
    "kept_entries",
    "load_snapshot",
    "save_snapshot",
    "settle_snapshot",
    "snapshot_key",
]

FORMAT = 3  # 2: host probes; local index sdists and the pages they were chosen from; 3: edges
# Timestamps of some file systems are coarser than the clock: a change this close to the
# start of the plan counts as made during it.
_RACY_MARGIN_NS = 50_000_000


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
    probes: dict[str, str] = field(default_factory=dict)  # host probe call -> digest of result
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
        for call, digest in self.probes.items():
            if probe_digest(call) != digest:
                return f"host probe {call}"
        for path, state in self.files.items():
            if state_now(path, state) != state:
                return path
        for distribution, recorded in self.versions.items():
            if _installed_version(distribution) != recorded:
                return f"distribution {distribution}"
        return None

    def changed_since(self, started_ns: int) -> str | None:
        """A checked file whose last change is not clearly older than ``started_ns``."""
        for path, state in self.files.items():
            if state in (None, DIRECTORY) or is_content(state):
                continue  # no time to compare (a content state was taken when it was read)
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
                    "edges": tuple(tuple(edge) for edge in entry["edges"]),
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


def snapshot_key(options: Options, project: Project, store_dir: Path, python: str) -> str | None:
    """The run options a kept plan is valid for; ``None``: never keep one (``--force``)."""
    if options.force:
        return None
    return digest_value(
        {
            "buildprint": __version__,
            "scheme": SCHEME,
            "interpreter": sys.version,
            # The same interpreter, however it was named (a console script's shebang and
            # `python -m` differ), is the same key.
            "python": os.path.realpath(shutil.which(python) or python),
            "project": str(project.root),
            "store": str(store_dir),
            "requirements": list(options.requirements),
            "requirement-files": [str(p.resolve()) for p in options.requirement_files],
            "reuse-by-version": sorted(options.reuse_by_version),
            "with-deps": options.with_deps,
            "from-source": options.from_source,
            "index-url": options.index_url,
            "find-links": list(options.find_links),
            "extra-index-url": list(options.extra_index_urls),
            "constraint-files": [str(p.resolve()) for p in options.constraint_files],
        }
    )


def kept_entries(
    file: Path, key: str, environ: Mapping[str, str]
) -> tuple[list[PlanEntry] | None, str]:
    """The kept plan for ``key`` while nothing it rests on changed (else ``None``), and a
    note saying which it was, and why."""
    kept = load_snapshot(file)
    if kept is None or kept.key != key:
        return None, "full plan"
    changed = kept.checks.first_change(environ)
    if changed is None:
        return kept.entries, "used: nothing it rests on changed"
    return None, f"full plan: {changed} changed"


def collect_checks(
    project: Project,
    decisions: Sequence[Decision],
    collector: InputCollector,
    store: LocalStore,
    *,
    requirement_files: Sequence[Path],
    ranged: Sequence[str],
    environ: Mapping[str, str],
    index: PackageIndex | None = None,
) -> Checks:
    """Everything the plan that made ``decisions`` rests on.

    ``requirement_files``: the files the requirements were read from (absent ones included:
    creating one changes the plan); ``ranged``: packages whose version an index chose;
    ``index``: the one the sources came from (without it, the project's ``index-url`` and
    ``find-links`` are taken for it, and the folder of each local sdist the index chose is
    checked as well, in case the run's options named others).
    """
    checks = Checks()
    index_root, links = _local_offers(project, index)
    for path in (
        project.root / PROJECT_FILE,
        project.lock_file,
        project.root / "packages",
        project.patches_dir,
        *requirement_files,
    ):
        checks.note_file(path)
    folders = PatchFolders(project.patches_dir)
    for decision in decisions:
        node = decision.node
        checks.note_file(node.settings_file)
        for path in (*folders.for_package(node.name, node.version), *node.patches):
            checks.note_file(path)
        if node.source.volatile is not None:
            checks.volatile.append(f"{node.name}: {node.source.volatile}")
        elif node.source.local is not None and node.source.commit is None:
            if node.source.local.is_dir():
                checks.volatile.append(f"{node.name}: source folder {node.source.local}")
            checks.note_file(node.source.local)
        dist = node.source.dist
        if dist is not None and dist.is_local:
            # Used in place, and a folder publishes no sha256 to memoize it by: a file replaced
            # under the same name is another source.
            checks.note_file(dist.local_path)
            if node.settings.source is None:  # chosen by the index from what it offered
                _note_offer(checks, node.name, index_root, links)
                for extra in index.extra_index_paths if index is not None else ():
                    _note_offer(checks, node.name, extra, [])
                if index is None:
                    checks.note_file(dist.local_path.parent)
        if decision.record is not None:
            checks.note_file(store.record_path(decision.record.signature))
            if decision.node.settings.signature.policy().discovered:
                for system_file in decision.record.discovered or ():  # what the build read
                    checks.note_file(system_file)
    # The locked build requirements need no check: the plan takes their sha256 from the lock
    # (checked above) and reads no wheel; a build fetches them verified against it.
    checks.volatile += [f"{name}: version chosen by the index" for name in ranged]
    for files in collector.code_files.values():
        checks.files.update(files)
    for distribution in sorted(collector.code_distributions):
        checks.note_version(distribution)
    reads = collector.hook_reads
    checks.files.update(reads.paths)
    checks.probes.update(reads.probes)
    checks.volatile += sorted(f"a plugin hook used {event}" for event in reads.volatile)
    names = {
        HOST_VARIABLE,
        *project.settings.signature.env_pass_through,
        *reads.env,
    }
    for name in sorted(names):
        checks.note_env(name, environ)
    # The toolchain probes: the interpreter, and every tool lookup (a retargeted link or a
    # new binary in a search folder changes what a build would run).
    interpreter = shutil.which(collector.python)
    if interpreter is not None:
        checks.note_file(os.path.realpath(interpreter))
    for tool_file in sorted(collector.toolchain_files):
        checks.note_file(tool_file)
    # buildprint's own code: an upgrade may compose signatures differently.
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name.startswith("buildprint") and file:
            checks.note_file(file)
    return checks


def _local_offers(project: Project, index: PackageIndex | None) -> tuple[Path | None, list[Path]]:
    """Where the index offers files on this machine: its folder (``None``: an http(s) index)
    and the local find-links locations."""
    if index is not None:
        root, found = index.index_path, index.find_links
    else:  # what the engine opens when the run's options name no other
        settings = project.settings.project

        def in_project(location: str) -> str:
            if "://" in location or os.path.isabs(location):
                return location
            return str(project.root / location)

        root = None if settings.index_url is None else local_path(in_project(settings.index_url))
        found = tuple(in_project(link) for link in settings.find_links)
    return root, [path for link in found if (path := local_path(link)) is not None]


def _note_offer(checks: Checks, name: str, root: Path | None, links: Sequence[Path]) -> None:
    """What the index read to choose ``name``'s sdist (as ``PackageIndex.files`` does): the
    local index's page or folder for it, with the places probed before it, and every local
    find-links location. A remote page is not read again: like the source memo, a pinned
    version's files there are taken as published for good."""
    if root is not None:
        for folder in (root / name, root / "simple" / name):
            page = folder / "index.html"
            checks.note_file(page)
            if page.is_file():
                break
            checks.note_file(folder)
            if folder.is_dir():
                break
        else:
            checks.note_file(root)  # a flat folder of files
    for link in links:
        checks.note_file(link)


def settle_snapshot(
    file: Path,
    key: str,
    decisions: Sequence[Decision],
    started_ns: int,
    checks: Callable[[], Checks],
) -> str:
    """Keep the plan just made, when it reuses everything and what it rests on (``checks``,
    collected only then) can be trusted; otherwise discard the kept one. Says which, and
    why not."""
    if not all(d.action == "reuse" and not d.changes for d in decisions):
        discard_snapshot(file)
        return "not kept: not every package is reused"
    rests_on = checks()
    racy = rests_on.changed_since(started_ns)
    if rests_on.volatile or racy:
        discard_snapshot(file)
        why = rests_on.volatile[0] if rests_on.volatile else f"{racy} changed as the plan ran"
        return f"not kept: {why}"
    save_snapshot(file, PlanSnapshot(key, [d.entry() for d in decisions], rests_on))
    return "kept"
