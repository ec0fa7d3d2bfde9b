"""Planning: the package graph, each package's signature, and what to do about it.

For each package, in dependency order: collect its inputs, compose its manifest, look in the
local store, then the remotes, and decide ``reuse``, ``fetch``, ``build`` or ``pending``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from buildprint.errors import BuildFailed, InputError
from buildprint.inputs.env import env_value
from buildprint.inputs.host import HOST_VARIABLE, host_value
from buildprint.inputs.patches import PatchFolders, find_patches, patches_value
from buildprint.inputs.plugin import function_reference, module_file, plugin_digest
from buildprint.inputs.toolchain import interpreter_identity, toolchain_value
from buildprint.plan.snapshot import PlanEntry
from buildprint.project.hooks import PluginHooks, call_hook, load_function, load_hooks
from buildprint.project.project import Project
from buildprint.project.settings import PackageSettings
from buildprint.project.tracking import HookReads, tracking
from buildprint.resolve.lockfile import Lock, LockedBuildDeps
from buildprint.resolve.sources import ResolvedSource, SourceResolver
from buildprint.signature.canonical import CanonicalValue, digest_value
from buildprint.signature.compose import (
    DependencyInput,
    PendingDependencies,
    SignatureInputs,
    compose,
    reduce_version,
)
from buildprint.signature.diff import Change, changed_paths, diff
from buildprint.signature.manifest import Manifest, PackageRef
from buildprint.signature.policy import SignatureDraft
from buildprint.store.local import LocalStore
from buildprint.store.memo import stat_key
from buildprint.store.record import ActionRecord

__all__ = ["Decision", "DepResult", "PackageNode", "PackageView", "Planner", "RemoteLookup"]


class HookVersion(str):
    """A version string with the granularities hooks ask for (``pkg.version.major_minor``)."""

    __slots__ = ()

    @property
    def major_minor(self) -> str:
        return reduce_version(self, "minor")

    @property
    def major(self) -> str:
        return reduce_version(self, "major")


@dataclass(frozen=True)
class PackageView:
    """What plugin hooks see as ``pkg``."""

    name: str
    version: HookVersion
    settings: PackageSettings


@dataclass
class PackageNode:
    """One package of the graph, with everything found about it before signing."""

    name: str
    version: str
    settings: PackageSettings
    settings_file: Path
    source: ResolvedSource
    patches: list[Path]
    locked: LockedBuildDeps
    deps: tuple[str, ...] = ()
    patch_digests: dict[str, str] = field(default_factory=dict)
    #: Why its build requirements could not be locked (the backend failed): the package
    #: then fails on its own, and its dependents with it, while the rest of the run goes on.
    lock_error: str | None = None

    @property
    def view(self) -> PackageView:
        return PackageView(self.name, HookVersion(self.version), self.settings)


@dataclass(frozen=True)
class DepResult:
    """What a decided (or finished) dependency offers its dependents."""

    version: str
    signature: str | None
    artifact: str | None


@dataclass
class Decision:
    """What to do about one package, and why."""

    node: PackageNode
    action: str  # reuse | fetch | build | pending
    manifest: Manifest | None = None
    record: ActionRecord | None = None
    changes: list[Change] = field(default_factory=list)
    reason: str = ""
    pending_on: list[str] = field(default_factory=list)
    closest: str | None = None  # signature of the stored build compared against

    @property
    def signature(self) -> str | None:
        return self.manifest.signature if self.manifest else None

    def result(self) -> DepResult:
        artifact = self.record.artifacts[0].content_digest if self.record else None
        return DepResult(self.node.version, self.signature, artifact)

    def entry(self) -> PlanEntry:
        return PlanEntry(
            self.node.name,
            self.node.version,
            self.signature,
            self.action,
            tuple(changed_paths(self.changes)),
            self.reason,
            tuple(self.pending_on),
            self.closest,
        )


class RemoteLookup(Protocol):
    def lookup(self, signature: str) -> ActionRecord | None: ...

    def lookup_many(self, signatures: Iterable[str]) -> dict[str, ActionRecord]: ...


LockStep = Callable[
    [str, Requirement, ResolvedSource, list[Path], PackageSettings], LockedBuildDeps
]


class Planner:
    """Computes signatures and decisions; the builder calls :meth:`decide` again as
    dependencies finish."""

    def __init__(
        self,
        project: Project,
        store: LocalStore,
        resolver: SourceResolver,
        lock: Lock,
        *,
        remotes: RemoteLookup | None = None,
        force: Iterable[str] = (),
        reuse_by_version: Iterable[str] = (),
        python: str = sys.executable,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.project = project
        self.store = store
        self.resolver = resolver
        self.lock = lock
        self.remotes = remotes
        self.force = {canonicalize_name(n) for n in force}
        self.reuse_by_version = {canonicalize_name(n) for n in reuse_by_version}
        self.python = python
        self.environ = dict(os.environ if environ is None else environ)
        self._toolchain: dict[str, CanonicalValue] | None = None
        #: Remote answers so far, by signature (None: no remote has it).
        self._remote_answers: dict[str, ActionRecord | None] = {}
        self._host_hook: PluginHooks | None = None
        self._hooks: dict[str, PluginHooks] = {}
        self._host_code: CanonicalValue = None
        # What plan-time plugin code (imports, ``signature`` and host hooks) looked at, and
        # which files each plugin digest was read from: what a plan snapshot must re-check.
        self.hook_reads = HookReads()
        self.code_files: dict[str, dict[str, str | None]] = {}
        self.code_distributions: set[str] = set()

    # -- the graph -------------------------------------------------------------------------

    def load_graph(
        self,
        requirements: Sequence[Requirement],
        lock_step: LockStep,
        *,
        install_requirements: bool = False,
    ) -> list[PackageNode]:
        """Nodes in dependency order. Packages missing from the lock (or, with
        ``install_requirements``, locked without them) are locked via ``lock_step`` (which
        may build an environment); the caller saves the lock."""
        seen: dict[str, Requirement] = {}
        for req in requirements:
            name: str = canonicalize_name(req.name)
            if name in seen and str(seen[name].specifier) != str(req.specifier):
                raise InputError(f"{name} is required twice: {seen[name]} and {req}")
            seen[name] = req
        nodes: dict[str, PackageNode] = {}
        folders = PatchFolders(self.project.patches_dir)
        for name, req in seen.items():
            settings = self.project.package_settings(name)
            settings_file = self.project.settings_file(name)
            source = self.resolver.resolve(req, settings.source, settings_file)
            patches = find_patches(self.project.patches_dir, name, source.version, folders)
            patch_digests = patches_value(patches)
            locked = self.lock.get(name)
            patches_key = digest_value(patch_digests)
            lock_error = None
            if (
                locked is None
                or not _lock_fits(locked, source, patches_key)
                or (install_requirements and locked.runtime is None)
            ):
                try:
                    locked = replace(
                        lock_step(name, req, source, patches, settings),
                        source=_lock_source_key(source, patches_key),
                    )
                    self.lock.set(name, locked)
                except BuildFailed as failed:
                    locked, lock_error = LockedBuildDeps([], []), str(failed)
            nodes[name] = PackageNode(
                name,
                source.version,
                settings,
                settings_file,
                source,
                patches,
                locked,
                patch_digests=patch_digests,
                lock_error=lock_error,
            )
        for node in nodes.values():
            node.deps = tuple(
                sorted(
                    {canonicalize_name(Requirement(r).name) for r in node.locked.requires}
                    & set(nodes) - {node.name}
                )
            )
        return _topological(nodes)

    # -- signatures ------------------------------------------------------------------------

    def toolchain(self) -> dict[str, CanonicalValue]:
        if self._toolchain is None:
            self._toolchain = toolchain_value(self.python)
        return self._toolchain

    def _host(self, node: PackageNode) -> dict[str, CanonicalValue]:
        variable = self.environ.get(HOST_VARIABLE)
        reference = self.project.settings.signature.host_hook
        if reference is None:
            return host_value(variable)
        if self._host_hook is None:
            with tracking(self.hook_reads):
                self._host_hook = load_function(self.project.root, reference)
        hooks, function = self._host_hook, reference.split(":", 1)[1]

        def call() -> Any:
            with tracking(self.hook_reads):
                return call_hook(hooks, function, node.view)

        return host_value(variable, call, hook_file=str(hooks.file))

    def plugin_value(self, module: str) -> CanonicalValue:
        """The plugin component, memoized by the state of every file it was read from (and
        their folders, so a new module that would shadow an import is noticed) and by the
        versions of the third-party distributions it records."""
        memo = self.resolver.memo
        key = f"plugin:{self.project.root}:{module}"
        cached = memo.get(key)
        if cached is None or not _plugin_memo_valid(cached):
            computed = plugin_digest(self.project.root, module)
            files = self._code_files(module, computed)
            cached = {"value": computed, "files": {str(p): stat_key(p) for p in sorted(files)}}
            memo.put(key, cached)
        self.code_files[module] = cached["files"]
        self.code_distributions.update(cached["value"].get("third-party", {}))
        value: CanonicalValue = cached["value"]
        return value

    def _code_files(self, module: str, value: Mapping[str, Any]) -> set[Path]:
        """The files (and their folders) a code digest was read from."""
        code = value.get("code") or {}
        paths: set[Path] = set()
        for name in {module} | {str(name).split(":", 1)[0] for name in code}:
            try:
                path = module_file(self.project.root, name)
            except InputError:
                continue
            paths.update({path, path.parent})
        return paths

    def hooks(self, node: PackageNode) -> PluginHooks | None:
        """The plugin hooks acting on ``node`` (loaded once per run)."""
        module = node.settings.plugin
        if module is None:
            return None
        if module not in self._hooks:
            with tracking(self.hook_reads):  # module-level code runs on import
                self._hooks[module] = load_hooks(self.project.root, module)
        return self._hooks[module]

    def inputs(self, node: PackageNode, deps: Mapping[str, DepResult]) -> SignatureInputs:
        """Everything that goes into ``node``'s signature."""
        settings = node.settings
        pass_through = {
            name: self.environ.get(name)
            for name in self.project.settings.signature.env_pass_through
        }
        plugin = self.plugin_value(settings.plugin) if settings.plugin else None
        host = self._host(node)
        reference = self.project.settings.signature.host_hook
        recorded: dict[str, CanonicalValue] = {
            "source": node.source.provenance(),  # type: ignore[dict-item]
            "python": interpreter_identity(self.python)["full_version"],
        }
        if reference is not None:
            if self._host_code is None:  # the same for every package: read it once
                host_code = function_reference(self.project.root, reference)
                files = self._code_files(reference.split(":", 1)[0], host_code)
                self.code_files[reference] = {str(p): stat_key(p) for p in sorted(files)}
                self._host_code = host_code
            recorded["host-hook"] = self._host_code
        return SignatureInputs(
            package=PackageRef(node.name, node.version),
            source=node.source.digest,
            patches=node.patch_digests,
            settings=settings.build_settings(),
            env=env_value(settings.env, pass_through),
            plugin=plugin,
            build_deps={
                w.name: {"version": w.version, "sha256": w.sha256} for w in _locked_wheels(node)
            },
            deps=tuple(
                DependencyInput(dep, deps[dep].version, deps[dep].signature, deps[dep].artifact)
                for dep in node.deps
            ),
            toolchain=self.toolchain(),
            host=host,
            configs=dict(settings.configs),
            rebuild=settings.rebuild,
            recorded=recorded,
        )

    def manifest(self, node: PackageNode, deps: Mapping[str, DepResult]) -> Manifest:
        inputs = self.inputs(node, deps)
        hook = None
        # The plugin digest already says which hooks the module defines: a plugin without a
        # ``signature`` hook need not be imported to plan.
        code = inputs.plugin.get("code", {}) if isinstance(inputs.plugin, dict) else {}
        has_hook = isinstance(code, dict) and f"{node.settings.plugin}:signature" in code
        hooks = self.hooks(node) if has_hook else None
        if hooks is not None and "signature" in hooks:
            view = node.view

            def hook(sig: SignatureDraft) -> None:
                with tracking(self.hook_reads):
                    call_hook(hooks, "signature", view, sig)

        return compose(inputs, node.settings.signature.policy(), hook)

    # -- decisions -------------------------------------------------------------------------

    def decide(
        self,
        node: PackageNode,
        deps: Mapping[str, DepResult],
        manifest: Manifest | None = None,
    ) -> Decision:
        """What to do for ``node`` given its dependencies' results (``manifest``: its
        manifest for them, when the caller composed it already)."""
        if node.lock_error is not None:
            first = node.lock_error.splitlines()[0]
            return Decision(
                node, "build", reason=f"its build requirements cannot be locked: {first}"
            )
        try:
            manifest = manifest or self.manifest(node, deps)
        except PendingDependencies as pending:
            return Decision(
                node,
                "pending",
                pending_on=pending.names,
                reason="waits for " + ", ".join(pending.names),
            )
        signature = manifest.signature
        forced = node.name in self.force
        if not forced:
            record = self.store.get_record(signature)
            if record is not None:
                return Decision(
                    node, "reuse", manifest, record, reason="same signature in the local store"
                )
            if self.remotes is not None:
                remote = self._remote_record(signature)
                if remote is not None:
                    return Decision(
                        node, "fetch", manifest, remote, reason="same signature in a remote cache"
                    )
        closest = self.closest(node, manifest)
        changes = diff(closest.manifest_obj, manifest, self.lookup_manifest) if closest else []
        if not forced and (node.settings.reuse == "version" or node.name in self.reuse_by_version):
            same_version = self._same_version(node)
            if same_version is not None:
                old = Manifest.from_json(
                    same_version.manifest, source=f"store:{same_version.signature}"
                )
                return Decision(
                    node,
                    "reuse",
                    manifest,
                    same_version,
                    diff(old, manifest, self.lookup_manifest),
                    reason="reuse by version: an existing wheel of the same version",
                    closest=same_version.signature,
                )
        reason = "forced" if forced else ("inputs changed" if changes else "never built")
        return Decision(
            node,
            "build",
            manifest,
            changes=changes,
            reason=reason,
            closest=closest.record.signature if closest else None,
        )

    def lookup_manifest(self, signature: str) -> Manifest | None:
        record = self.store.get_record(signature)
        if record is None:
            return None
        try:
            return Manifest.from_json(record.manifest, source=f"store:{signature}")
        except InputError:
            return None

    def closest(self, node: PackageNode, manifest: Manifest) -> _Candidate | None:
        """The stored build most like ``manifest``: same toolchain first, then same version,
        then the most equal components (Conan's ``graph explain`` order)."""
        entries = self.store.index_entries(node.name)
        if not entries:
            return None
        mine = {name: c.digest for name, c in manifest.components.items()}

        def rank(entry: Any) -> tuple[int, int, int]:
            same_toolchain = entry.components.get("toolchain") == mine.get("toolchain")
            same_version = entry.version == node.version
            equal = sum(1 for k, v in mine.items() if entry.components.get(k) == v)
            return (int(same_toolchain), int(same_version), equal)

        for entry in sorted(entries, key=rank, reverse=True):
            record = self.store.get_record(entry.signature)
            if record is None:
                continue
            try:
                old = Manifest.from_json(record.manifest, source=f"store:{entry.signature}")
            except InputError:
                continue
            return _Candidate(record, old)
        return None

    def _same_version(self, node: PackageNode) -> ActionRecord | None:
        for record in self.store.find(node.name, node.version):
            return record
        return None

    def _remote_record(self, signature: str) -> ActionRecord | None:
        assert self.remotes is not None
        if signature not in self._remote_answers:
            self._remote_answers[signature] = self.remotes.lookup(signature)
        return self._remote_answers[signature]

    def plan(self, nodes: Sequence[PackageNode]) -> list[Decision]:
        """Decisions for all nodes, assuming nothing is built during the plan.

        Nodes are decided in waves (those whose dependencies are all decided), and each
        wave's signatures missing from the local store are looked up on the remotes at once
        (``lookup_many``, concurrent), not one request after another.
        """
        results: dict[str, DepResult] = {}
        decisions: dict[str, Decision] = {}
        while len(decisions) < len(nodes):
            wave = [
                n for n in nodes if n.name not in decisions and all(d in decisions for d in n.deps)
            ]
            if not wave:  # a cycle cannot come from the lock, but never loop forever
                wave = [n for n in nodes if n.name not in decisions]
            manifests: dict[str, Manifest] = {}
            for node in wave:
                if node.lock_error is None and all(d in results for d in node.deps):
                    with contextlib.suppress(PendingDependencies):
                        manifests[node.name] = self.manifest(node, _known(node, results))
            self._look_up_remotely(manifests)
            for node in wave:
                missing = [d for d in node.deps if d not in results]
                if missing:
                    decision = Decision(
                        node,
                        "pending",
                        pending_on=missing,
                        reason="waits for " + ", ".join(missing),
                    )
                else:
                    decision = self.decide(node, _known(node, results), manifests.get(node.name))
                decisions[node.name] = decision
                if decision.action in ("reuse", "fetch"):
                    results[node.name] = decision.result()
                elif decision.action == "build" and decision.manifest is not None:
                    # Known signature, unknown artifact: dependents in artifact mode are pending.
                    results[node.name] = DepResult(node.version, decision.signature, None)
        return [decisions[n.name] for n in nodes]

    def _look_up_remotely(self, manifests: Mapping[str, Manifest]) -> None:
        """Ask the remotes at once for the signatures the local store lacks."""
        if self.remotes is None:
            return
        wanted = [
            m.signature
            for name, m in manifests.items()
            if name not in self.force
            and m.signature not in self._remote_answers
            and not self.store.has_record(m.signature)
        ]
        if wanted:
            found = self.remotes.lookup_many(wanted)
            for signature in wanted:
                self._remote_answers[signature] = found.get(signature)


@dataclass(frozen=True)
class _Candidate:
    record: ActionRecord
    manifest_obj: Manifest


def _locked_wheels(node: PackageNode) -> list[Any]:
    built = set(node.deps)
    return [w for w in node.locked.wheels if canonicalize_name(w.name) not in built]


def _plugin_memo_valid(cached: Any) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    files = cached.get("files")
    if not isinstance(files, dict) or not files:
        return False
    if any(stat_key(Path(path)) != state for path, state in files.items()):
        return False
    third_party = cached.get("value", {}).get("third-party", {})
    for dist, recorded in third_party.items():
        try:
            if version(dist) != recorded:
                return False
        except PackageNotFoundError:
            return False
    return True


def _lock_fits(locked: LockedBuildDeps, source: ResolvedSource, patches: str) -> bool:
    return locked.source == _lock_source_key(source, patches)


def _lock_source_key(source: ResolvedSource, patches: str) -> str:
    """What build requirements are read from: the source as patched."""
    return digest_value({"source": source.digest, "patches": patches})


def _topological(nodes: dict[str, PackageNode]) -> list[PackageNode]:
    order: list[PackageNode] = []
    state: dict[str, int] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join((*path[path.index(name) :], name))
            raise InputError(f"dependency cycle: {cycle}")
        state[name] = 1
        for dep in nodes[name].deps:
            visit(dep, (*path, name))
        state[name] = 2
        order.append(nodes[name])

    for name in sorted(nodes):
        visit(name, ())
    return order


def _known(node: PackageNode, results: Mapping[str, DepResult]) -> dict[str, DepResult]:
    return {d: results[d] for d in node.deps if d in results}
