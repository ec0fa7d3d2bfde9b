"""The build run: decisions executed by a pool of workers, each package once its
dependencies have finished; reuse and fetch place stored wheels, build runs the backend."""

from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pyproject_hooks
from filelock import FileLock

from buildprint.builder import backend
from buildprint.builder.environment import BuildEnvironment
from buildprint.builder.guard import kill_guarded
from buildprint.builder.outcome import Outcome
from buildprint.builder.preparer import Preparer
from buildprint.builder.trace import (
    TRACE_DIR_VARIABLE,
    interpreter_roots,
    parse_trace,
    tracer,
)
from buildprint.builder.wheel import artifact_digest, check_built_wheel, embed_manifest
from buildprint.builder.wheelhouse import Wheelhouse
from buildprint.errors import BuildFailed, BuildprintError, CorruptBlob, InputError
from buildprint.inputs.discovered import ReadReport, SystemFiles, classify
from buildprint.inputs.toolchain import toolset
from buildprint.plan.decision import Decision
from buildprint.plan.graph import PackageNode
from buildprint.plan.inputs import DepResult, locked_wheels
from buildprint.plan.planner import Planner
from buildprint.project.hooks import PluginHooks, call_hook
from buildprint.project.tracking import HookReads, tracking
from buildprint.signature.canonical import canonical_bytes
from buildprint.signature.compose import PendingDependencies
from buildprint.signature.manifest import Manifest
from buildprint.states import Done
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord, Artifact

__all__ = ["Builder", "Progress", "RemoteBuild", "RemoteBuilt"]

Progress = Callable[[str, Decision | Outcome], None]


class RemoteBuilt(Protocol):
    """A build done elsewhere: the record the shared remote holds, and where it was built."""

    @property
    def record(self) -> ActionRecord: ...

    @property
    def worker(self) -> str: ...

    @property
    def note(self) -> str | None: ...

    @property
    def seconds(self) -> float | None: ...

    @property
    def built(self) -> bool: ...

    @property
    def queued(self) -> float: ...


#: Builds a decided package elsewhere (a cluster executor) and returns its record there; the
#: int is its priority (how long a chain of the run's packages waits on it).
RemoteBuild = Callable[[Decision, Mapping[str, DepResult], int], RemoteBuilt]

log = logging.getLogger("buildprint.store")

#: How often a long run writes the wheelhouse's index pages (else once, at its end).
_FLUSH_SECONDS = 10.0


class Builder:
    """Executes decisions with ``jobs`` workers; a package starts once its dependencies have
    finished; a failure fails its dependents but nothing else."""

    def __init__(
        self,
        planner: Planner,
        preparer: Preparer,
        store: LocalStore,
        wheelhouse: Wheelhouse,
        logs: Path,
        *,
        fetch: Callable[[ActionRecord], None] | None = None,
        fetch_many: Callable[[list[ActionRecord]], list[ActionRecord]] | None = None,
        push: Callable[[ActionRecord], object] | None = None,
        fetched: Collection[str] = (),
        source_date_epoch: int = backend.DEFAULT_SOURCE_DATE_EPOCH,
        remote_build: RemoteBuild | None = None,
    ) -> None:
        self.planner = planner
        self.preparer = preparer
        self.store = store
        self.wheelhouse = wheelhouse
        self.logs = logs
        self.fetch = fetch
        self.fetch_many = fetch_many
        self.push = push
        #: Signatures fetched from a remote before the run: found locally now, but fetched.
        self.fetched = frozenset(fetched)
        self.source_date_epoch = source_date_epoch
        #: Where builds run when not here (each build a cluster task; the rest stays local).
        self.remote_build = remote_build
        #: Each started package's node and dependency results, to build a dependency again
        #: whose stored wheel turns out damaged when a dependent needs it.
        self._inputs: dict[str, tuple[PackageNode, Mapping[str, DepResult]]] = {}
        self._inputs_lock = threading.Lock()
        #: Per package of the run: the longest chain of its dependents (cluster priorities).
        self._heights: dict[str, int] = {}
        #: Builds done elsewhere whose wheels are to be fetched and placed here: in the
        #: background, in batches (one store write each), by one thread; their dependents
        #: need not wait for that (their workers fetch from the remote).
        self._unplaced: list[Outcome] = []
        self._placing: list[Future[None]] = []
        self._placer: ThreadPoolExecutor | None = None

    def run(
        self,
        nodes: Sequence[PackageNode],
        jobs: int,
        progress: Progress | None = None,
        *,
        done: Mapping[str, Outcome] | None = None,
    ) -> list[Outcome]:
        """The outcome of each of ``nodes``, in their order; those in ``done`` (built earlier
        in the run, to lock their dependents) are not run again."""
        done = {n.name: done[n.name] for n in nodes if done and n.name in done}
        if progress:
            # Every package once, up front, so a display knows the whole run (its total).
            for node in nodes:  # those done were shown done (the same display) already
                waits = ", ".join(node.deps) or "a worker"
                progress("pending", Decision(node, "pending", reason=f"waits for {waits}"))
        self.check_inputs(nodes, skip=done)
        self._heights = _heights(nodes)
        try:
            outcomes = self._run(nodes, jobs, progress, done)
            self._settle_placing()
            return outcomes
        finally:
            # The wheelhouse's pages and memo, once for the whole run (and for what was
            # placed before an interruption), not once per wheel.
            self.wheelhouse.flush()

    def _run(
        self,
        nodes: Sequence[PackageNode],
        jobs: int,
        progress: Progress | None,
        done: Mapping[str, Outcome],
    ) -> list[Outcome]:
        outcomes: dict[str, Outcome] = dict(done)
        flushed = time.monotonic()
        remaining = {n.name: n for n in nodes if n.name not in done}
        running: dict[Future[Outcome], str] = {}
        # Builds elsewhere wait on their task, not on this machine: one thread each.
        threads = max(jobs, len(remaining)) if self.remote_build else jobs
        pool = ThreadPoolExecutor(max_workers=max(1, threads))
        try:
            while remaining or running:
                for name, node in list(remaining.items()):
                    if any(d in remaining or d in running.values() for d in node.deps):
                        continue
                    del remaining[name]
                    failed = [d for d in node.deps if outcomes[d].done == "failed"]
                    if failed:
                        decision = Decision(node, "build", reason="dependency failed")
                        outcomes[name] = Outcome(
                            decision, "failed", error=f"dependency {', '.join(failed)} failed"
                        )
                        if progress:
                            progress("done", outcomes[name])
                        continue
                    deps = {d: outcomes[d].result() for d in node.deps}
                    running[pool.submit(self._one, node, deps, progress)] = name  # type: ignore[arg-type]
                if not running:
                    continue
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    outcomes[name] = future.result()
                    if progress:
                        progress("done", outcomes[name])
                if time.monotonic() - flushed > _FLUSH_SECONDS:
                    # A long run shows its wheels in the index in batches, not only at the end.
                    self.wheelhouse.flush()
                    flushed = time.monotonic()
        except BaseException:
            if self._placer is not None:
                self._placer.shutdown(wait=False, cancel_futures=True)
            # Ctrl-C reaches only this thread, and the builds run in sessions of their own:
            # stop queued work and end the running builds' process groups, rather than
            # waiting (hours, for some builds) for them to finish. Nothing half-built is
            # stored: a record is written only after its wheel is complete.
            pool.shutdown(wait=False, cancel_futures=True)
            kill_guarded()
            raise
        pool.shutdown()
        return [outcomes[n.name] for n in nodes]

    def check_inputs(self, nodes: Sequence[PackageNode], skip: Collection[str] = ()) -> None:
        """Compose every signature that does not wait on a build, before anything is built.

        Bad input found here (a plugin or host hook that raises, a policy naming an unknown
        component) raises, so the run stops with exit 2 and leaves the store and wheelhouse as
        they were, instead of failing one package after others were already stored.
        """
        versions = {n.name: n.version for n in nodes}
        for node in nodes:
            if node.lock_error is not None or node.name in skip:
                continue  # fails on its own when its turn comes (or was done already)
            unknown = {d: DepResult(versions[d], None, None) for d in node.deps}
            try:
                self.planner.manifest(node, unknown)
            except PendingDependencies:
                continue  # composed again, with its dependencies' results, when they finish

    def _one(
        self, node: PackageNode, deps: Mapping[str, DepResult], progress: Progress | None
    ) -> Outcome:
        started = time.monotonic()
        with self._inputs_lock:
            self._inputs[node.name] = (node, deps)
        if node.lock_error is not None:
            decision = self.planner.decide(node, deps)
            return Outcome(decision, "failed", error=node.lock_error)
        try:
            decision = self.planner.decide(node, deps)
        except BuildprintError as exc:
            return Outcome(Decision(node, "build", reason="bad input"), "failed", error=str(exc))
        signed = time.monotonic() - started
        prefetched = (
            decision.action == "reuse"
            and decision.record is not None
            and decision.record.signature in self.fetched  # the key: a variant's own
        )
        if prefetched:
            # Found locally now because the run fetched it before it started.
            decision = replace(decision, action="fetch", reason="same signature in a remote cache")
        if progress:
            progress("start", decision)
        try:
            note = None
            if decision.action == "fetch" and not prefetched:
                note = self._fetch_failure(decision)
            if decision.action == "reuse" or (decision.action == "fetch" and note is None):
                assert decision.record is not None
                damaged = self._place_stored(node.name, decision.record)
                if damaged is None:
                    done: Done = "reused" if decision.action == "reuse" else "fetched"
                    outcome = Outcome(decision, done, decision.record)
                elif self._refetch(decision.record):
                    note = f"{damaged}; fetched again"
                    outcome = Outcome(decision, "fetched", decision.record, note=note)
                else:
                    outcome = self._build_once(decision, deps)
                    outcome.note = f"{damaged}; built again"
            else:
                outcome = self._build_once(decision, deps)
                outcome.note = outcome.note or note
        except BuildprintError as exc:
            log = self.logs / f"{node.name}-{node.version}.log"
            outcome = Outcome(decision, "failed", error=str(exc), log=log if log.exists() else None)
        outcome.seconds = time.monotonic() - started
        outcome.signature_seconds = signed
        return outcome

    def _fetch_failure(self, decision: Decision) -> str | None:
        """Fetch a remote record's wheel; ``None`` when it worked, else why not (the cache
        reports it too), and the package is built instead."""
        assert decision.record is not None and self.fetch is not None
        try:
            self.fetch(decision.record)
        except BuildprintError as exc:
            return f"fetch failed ({exc}); building instead"
        return None

    def _place(self, record: ActionRecord) -> None:
        """Put a stored build's wheels in the wheelhouse (a no-op when they are there), each
        checked while it is copied (``CorruptBlob`` if its blob is damaged or gone)."""
        for artifact in record.artifacts:
            copy = functools.partial(self.store.copy_blob, artifact.sha256, size=artifact.size)
            self.wheelhouse.place(artifact.filename, artifact.sha256, copy)

    def _place_stored(self, name: str, record: ActionRecord) -> str | None:
        """``_place``; if a blob is damaged: None when placed, else why not, after one warning
        and dropping the record, so that nothing (this run or a later one) reuses it."""
        try:
            self._place(record)
        except CorruptBlob as exc:
            return self._drop_damaged(name, record, exc)
        return None

    def _drop_damaged(self, name: str, record: ActionRecord, exc: CorruptBlob) -> str:
        """Warn once about a damaged stored wheel and drop its record; the note to report."""
        filename = next(
            (a.filename for a in record.artifacts if a.sha256 == exc.digest), exc.digest
        )
        log.warning(
            "%s: stored wheel %s (blob %s) %s; dropping the record and getting it again",
            name,
            filename,
            exc.digest,
            exc.problem,
        )
        self.store.remove_record(record.signature)
        return f"stored wheel {filename} was damaged"

    def _refetch(self, record: ActionRecord) -> bool:
        """Fetch a record again from the remotes (its blobs verified) and place its wheels;
        whether that worked."""
        if self.fetch is None:
            return False
        try:
            self.fetch(record)
            self._place(record)
        except BuildprintError:
            return False
        return True

    def build(self, decision: Decision, deps: Mapping[str, DepResult]) -> Outcome:
        """Build one decided package now, here (a cluster worker's task); a failure is the
        outcome's, not an exception."""
        try:
            return self._build_once(decision, deps)
        except BuildprintError as exc:
            log = self.logs / f"{decision.node.name}-{decision.node.version}.log"
            return Outcome(decision, "failed", error=str(exc), log=log if log.exists() else None)

    def _build_once(self, decision: Decision, deps: Mapping[str, DepResult]) -> Outcome:
        """Build, holding the signature's lock: any number of processes may share a store,
        and a signature is built by one at a time. One that waited finds what the other
        stored and reuses it (a forced build builds all the same)."""
        signature = decision.signature
        assert signature is not None
        locks = self.store.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        with FileLock(str(locks / f"{signature}.lock")):
            forced = decision.node.name in self.planner.force
            stored = (
                None
                if forced
                else self.planner.find(decision.node, signature, remotes=False).record
            )
            if stored is not None and self._place_stored(decision.node.name, stored) is None:
                note = "built by another buildprint process meanwhile; reused"
                return Outcome(decision, "reused", stored, note=note)
            if self.remote_build is not None and not decision.node.settings.prebuilt:
                return self._build_elsewhere(decision, deps)
            return self._build(decision, deps)

    def _build_elsewhere(self, decision: Decision, deps: Mapping[str, DepResult]) -> Outcome:
        """Build on the cluster; the record it pushed is fetched and its wheel placed in the
        background (the run waits for that before it ends), so dependents start at once."""
        assert self.remote_build is not None
        built = self.remote_build(decision, deps, self._heights.get(decision.node.name, 0))
        outcome = Outcome(
            decision,
            "built" if built.built else "fetched",
            built.record,
            note=built.note,
            worker=built.worker,
            worker_seconds=built.seconds,
            queued_seconds=built.queued,
        )
        with self._inputs_lock:
            if self._placer is None:
                self._placer = ThreadPoolExecutor(1, thread_name_prefix="buildprint-place")
            self._unplaced.append(outcome)
            self._placing.append(self._placer.submit(self._place_fetched))
        return outcome

    def _place_fetched(self) -> None:
        """Fetch the builds done elsewhere so far, as one batch, and place their wheels; a
        build whose wheel could not be fetched here failed after all (it is on the remote:
        the next run fetches it)."""
        with self._inputs_lock:
            batch, self._unplaced = self._unplaced, []
        if not batch:
            return
        assert self.fetch_many is not None
        stored = {r.signature for r in self.fetch_many([o.record for o in batch if o.record])}
        for outcome in batch:
            assert outcome.record is not None
            problem = None if outcome.record.signature in stored else "fetching it failed"
            if problem is None:
                try:
                    self._place(outcome.record)
                except BuildprintError as exc:
                    problem = str(exc)
            if problem is not None:
                outcome.done = "failed"
                outcome.error = f"built on {outcome.worker}, but not placed here: {problem}"

    def _settle_placing(self) -> None:
        """Wait until every build done elsewhere is fetched and placed (or failed)."""
        with self._inputs_lock:
            placing, self._placing = self._placing, []
        for future in placing:
            future.result()

    def _build(self, decision: Decision, deps: Mapping[str, DepResult]) -> Outcome:
        node = decision.node
        manifest = decision.manifest
        assert manifest is not None
        if node.settings.prebuilt:
            return self._take_prebuilt(decision, manifest)
        # A folder of this build's own: other processes may build the same package in the
        # same store. The tree inside is always src/<name>-<version>, and the compilers'
        # path remapping makes the wheel independent of where that is.
        work = self.preparer.work_folder(f"{node.name}-{node.version}")
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{node.name}-{node.version}.log"
        log.unlink(missing_ok=True)
        try:
            final, manifest, reads = self._make_wheel(decision, deps, work, log)
            record = self._store(node, manifest, final, stale=decision.stale, reads=reads)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Outcome(decision, "built", record, log=log if log.exists() else None)

    def rebuild(self, decision: Decision, deps: Mapping[str, DepResult], dest: Path) -> Path:
        """Build ``decision``'s package again into ``dest`` (``verify``): a fresh work folder
        and build environment, nothing stored, placed or pushed; its log beside the wheel."""
        node = decision.node
        work = self.preparer.work_folder(f"verify-{node.name}-{node.version}")
        try:
            final, _manifest, _reads = self._make_wheel(
                decision, deps, work, dest / f"{node.name}-{node.version}.log", fresh=True
            )
            dest.mkdir(parents=True, exist_ok=True)
            return Path(shutil.move(final, dest / final.name))
        finally:
            shutil.rmtree(work, ignore_errors=True)

    def _make_wheel(
        self,
        decision: Decision,
        deps: Mapping[str, DepResult],
        work: Path,
        log: Path,
        *,
        fresh: bool = False,
    ) -> tuple[Path, Manifest, ReadReport | None]:
        """The patched tree built into a wheel in ``work``, checked and with its manifest
        embedded (its discovered part added when the build was traced), and what it read."""
        node = decision.node
        manifest = decision.manifest
        assert manifest is not None
        root = self.preparer.source_tree(node.source, node.patches, work / "src")
        hooks = self.planner.collector.hooks(node)
        view = node.view
        # The declared variables, update_env's answer included (it ran at plan time).
        env = self.planner.collector.build_env(node)
        if hooks is not None and "prepare_source" in hooks:
            _build_time_hook(hooks, "prepare_source", env, view, root)
        wheels = self._dep_wheels(node, deps, work / "deps")
        benv = (
            self.preparer.fresh_environment(locked_wheels(node), wheels, work)
            if fresh
            else self.preparer.environment(locked_wheels(node), wheels, work)
        )
        out = work / "out"
        shutil.rmtree(out, ignore_errors=True)
        tracing = tracer()
        by_hook = hooks is not None and "build_wheel" in hooks  # runs here: untraced
        trace = (tracing, work / "trace") if tracing.kind and not by_hook else None
        if hooks is not None and by_hook:
            # The hook gets the environment the backend would get, whole.
            environ = backend.remap_source_flags(
                backend.build_env(benv, env, source_date_epoch=self.source_date_epoch),
                root,
            )
            built = Path(
                _build_time_hook(
                    hooks,
                    "build_wheel",
                    env,
                    view,
                    root,
                    out,
                    environ,
                    dict(node.settings.config_settings),
                )
            )
        else:
            built = backend.build_wheel(
                root,
                benv,
                out,
                node.settings.config_settings,
                env,
                source_date_epoch=self.source_date_epoch,
                log_path=log,
                # Compiled paths must not depend on where the store is, or two
                # machines (or checkouts) build different bytes from equal inputs.
                remap_source_path=True,
                trace=trace,
            )
        check_built_wheel(built, node.name, node.version, self.preparer.tags)
        reads = None
        if trace is not None:
            reads = self._reads(node, root, benv, env, work, trace[1], tracing.version)
            if node.settings.signature.policy().discovered:
                manifest = manifest.with_discovered(reads.discovered)
        final = embed_manifest(
            built, manifest.to_bytes(), work / "final", build_tag=node.settings.rebuild
        )
        return final, manifest, reads

    def _take_prebuilt(self, decision: Decision, manifest: Manifest) -> Outcome:
        """A ``prebuilt = true`` package: its locked index wheel (sha256 checked), stored
        and placed as it is, byte for byte (no manifest embedded)."""
        node = decision.node
        record = self._store(node, manifest, self.preparer.wheels(node.locked.wheels)[0])
        return Outcome(decision, "built", record, note="prebuilt: the index wheel, as locked")

    def _reads(
        self,
        node: PackageNode,
        root: Path,
        benv: BuildEnvironment,
        declared: Mapping[str, str],
        work: Path,
        trace: Path,
        tracer_version: str,
    ) -> ReadReport:
        """What the traced build read, sorted (see :func:`classify`)."""
        reads = parse_trace(sorted(trace.glob("trace.*")))
        tools = toolset(benv.interpreter, declared)
        variables = dict.fromkeys((*backend.CONSTRUCTED, "CPPFLAGS", "RUSTFLAGS"), "set")
        if tracer_version.startswith("preload"):
            variables.update(dict.fromkeys(("LD_PRELOAD", TRACE_DIR_VARIABLE), "set"))
        variables.update(dict.fromkeys(declared, "declared"))
        return classify(
            reads.read | reads.executed,
            reads.loaded,
            absent=reads.absent,
            tree=str(root),
            environment=[
                str(benv.path),
                str(work),
                str(benv.home_dir),
                str(benv.tmp_dir),
                *interpreter_roots(benv.interpreter),
                os.path.dirname(pyproject_hooks.__file__),  # the hook runner
                tempfile.gettempdir(),  # this process's: the hook runner's input.json
            ],
            toolchain=[
                str(benv.python),
                *(real for _found, real in filter(None, tools.found.values())),
            ],
            ignore=node.settings.signature.policy().discovered_ignore,
            files=self.planner.system or SystemFiles(),
            variables=variables,
            tracer=tracer_version,
        )

    def _store(
        self,
        node: PackageNode,
        manifest: Manifest,
        wheel: Path,
        *,
        stale: ActionRecord | None = None,
        reads: ReadReport | None = None,
    ) -> ActionRecord:
        """Store ``wheel`` as ``node``'s build under ``manifest`` (as a variant of the build
        ``stale`` when that one's system files moved), place it in the wheelhouse and push
        it (when pushing). What the build read is kept beside it, for ``audit``."""
        sha = self.store.put_blob(wheel)
        key, variant_of = manifest.signature, None
        if stale is not None and self.planner.system is not None:
            key, variant_of = self.planner.variant(node, stale), manifest.signature
        record = ActionRecord(
            signature=key,
            name=node.name,
            version=node.version,
            manifest=manifest.to_json(),
            artifacts=(Artifact(wheel.name, sha, wheel.stat().st_size, artifact_digest(wheel)),),
            variant_of=variant_of,
            reads=None
            if reads is None
            else self.store.put_blob_bytes(canonical_bytes(reads.to_json())),
        )
        self.store.put_record(record)
        self.wheelhouse.add(wheel, wheel.name, sha)
        if self.push is not None:
            self.push(record)
        return record

    def _dep_wheels(
        self, node: PackageNode, deps: Mapping[str, DepResult], folder: Path
    ) -> list[tuple[Path, str]]:
        """Wheels (path, sha256) of the dependencies built in this graph — exactly the builds
        this package's signature was computed against — from the store, under their names."""
        folder.mkdir(parents=True, exist_ok=True)
        found = []
        for dep in node.deps:
            signature = deps[dep].key or deps[dep].signature
            record = self.store.get_record(signature) if signature else None
            if record is None:
                raise BuildFailed(f"{node.name}: dependency {dep} has no stored wheel")
            try:
                found.extend(self._copy_wheels(record, folder))
            except CorruptBlob as exc:
                self._drop_damaged(dep, record, exc)
                found.extend(self._copy_wheels(self._dep_again(node, dep, record), folder))
        return found

    def _copy_wheels(self, record: ActionRecord, folder: Path) -> list[tuple[Path, str]]:
        """Copy a record's wheels from the store into ``folder``, checked while copying."""
        found = []
        for artifact in record.artifacts:
            target = folder / artifact.filename
            self.store.copy_blob(artifact.sha256, target, size=artifact.size)
            found.append((target, artifact.sha256))
        return found

    def _dep_again(self, node: PackageNode, dep: str, record: ActionRecord) -> ActionRecord:
        """A dependency's build again, its stored wheel found damaged (and dropped): fetched
        from a remote, else built (the same signature), which also fixes the wheelhouse."""
        if self._refetch(record):
            return record
        with self._inputs_lock:
            inputs = self._inputs.get(dep)
        if inputs is None:
            raise BuildFailed(f"{node.name}: the stored wheel of {dep} is damaged")
        dep_node, dep_deps = inputs
        decision = self.planner.decide(dep_node, dep_deps)
        outcome = self._build_once(decision, dep_deps)
        if outcome.record is None or outcome.record.signature != record.signature:
            raise BuildFailed(f"{node.name}: the stored wheel of {dep} is damaged")
        return outcome.record


def _heights(nodes: Sequence[PackageNode]) -> dict[str, int]:
    """Per package: 1 + the longest chain of the run's packages that build with it (``nodes``
    in dependency order)."""
    heights = {node.name: 1 for node in nodes}
    for node in reversed(nodes):
        for dep in node.deps:
            if dep in heights:
                heights[dep] = max(heights[dep], heights[node.name] + 1)
    return heights


_TEMP_VARIABLES = frozenset({"TMPDIR", "TEMP", "TMP"})  # read by tempfile on first use


def _build_time_hook(
    hooks: PluginHooks, name: str, declared: Mapping[str, str], *args: object
) -> Any:
    """Call a hook that runs during the build (``prepare_source``, ``build_wheel``), tracked:
    the signature was composed before it ran, so a hook that reads a variable outside the
    build's declared ones (or starts a process that inherits the whole environment) could
    change the wheel without changing the signature. That fails the build, naming it."""
    reads = HookReads()
    with tracking(reads):
        result = call_hook(hooks, name, *args)
    # Where temp files go does not change what is built; every other read might.
    undeclared = sorted(v for v in reads.env if v not in declared and v not in _TEMP_VARIABLES)
    if undeclared:
        shown = ", ".join(
            "the whole environment (or started a process without env=, which inherits it)"
            if v == "*"
            else v
            for v in undeclared
        )
        raise InputError(
            f"{name} hook ({hooks.module}) read {shown} from the caller's environment at "
            "build time, which the signature does not cover: use the env it is given, or "
            "declare the variable (the package's env or [signature] env-pass-through)",
            file=hooks.file,
        )
    return result
