"""The build run: decisions executed by a pool of workers, each package once its
dependencies have finished; reuse and fetch place stored wheels, build runs the backend."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Any

from filelock import FileLock

from buildprint.builder import backend
from buildprint.builder.guard import kill_guarded
from buildprint.builder.outcome import Outcome
from buildprint.builder.preparer import Preparer
from buildprint.builder.wheel import artifact_digest, check_built_wheel, embed_manifest
from buildprint.builder.wheelhouse import Wheelhouse
from buildprint.errors import BuildFailed, BuildprintError, InputError
from buildprint.plan.decision import Decision
from buildprint.plan.graph import PackageNode
from buildprint.plan.inputs import DepResult, locked_wheels
from buildprint.plan.planner import Planner
from buildprint.project.hooks import PluginHooks, call_hook
from buildprint.project.tracking import HookReads, tracking
from buildprint.signature.compose import PendingDependencies
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord, Artifact

__all__ = ["Builder", "Progress"]

Progress = Callable[[str, Decision | Outcome], None]


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
        push: Callable[[ActionRecord], object] | None = None,
        fetched: Collection[str] = (),
        source_date_epoch: int = backend.DEFAULT_SOURCE_DATE_EPOCH,
    ) -> None:
        self.planner = planner
        self.preparer = preparer
        self.store = store
        self.wheelhouse = wheelhouse
        self.logs = logs
        self.fetch = fetch
        self.push = push
        #: Signatures fetched from a remote before the run: found locally now, but fetched.
        self.fetched = frozenset(fetched)
        self.source_date_epoch = source_date_epoch

    def run(
        self, nodes: Sequence[PackageNode], jobs: int, progress: Progress | None = None
    ) -> list[Outcome]:
        if progress:
            # Every package once, up front, so a display knows the whole run (its total).
            for node in nodes:
                waits = ", ".join(node.deps) or "a worker"
                progress("pending", Decision(node, "pending", reason=f"waits for {waits}"))
        self.check_inputs(nodes)
        outcomes: dict[str, Outcome] = {}
        remaining = {n.name: n for n in nodes}
        running: dict[Future[Outcome], str] = {}
        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
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
        except BaseException:
            # Ctrl-C reaches only this thread, and the builds run in sessions of their own:
            # stop queued work and end the running builds' process groups, rather than
            # waiting (hours, for some builds) for them to finish. Nothing half-built is
            # stored: a record is written only after its wheel is complete.
            pool.shutdown(wait=False, cancel_futures=True)
            kill_guarded()
            raise
        pool.shutdown()
        return [outcomes[n.name] for n in nodes]

    def check_inputs(self, nodes: Sequence[PackageNode]) -> None:
        """Compose every signature that does not wait on a build, before anything is built.

        Bad input found here (a plugin or host hook that raises, a policy naming an unknown
        component) raises, so the run stops with exit 2 and leaves the store and wheelhouse as
        they were, instead of failing one package after others were already stored.
        """
        versions = {n.name: n.version for n in nodes}
        for node in nodes:
            if node.lock_error is not None:
                continue  # fails on its own when its turn comes
            unknown = {d: DepResult(versions[d], None, None) for d in node.deps}
            try:
                self.planner.manifest(node, unknown)
            except PendingDependencies:
                continue  # composed again, with its dependencies' results, when they finish

    def _one(
        self, node: PackageNode, deps: Mapping[str, DepResult], progress: Progress | None
    ) -> Outcome:
        started = time.monotonic()
        if node.lock_error is not None:
            decision = self.planner.decide(node, deps)
            return Outcome(decision, "failed", error=node.lock_error)
        try:
            decision = self.planner.decide(node, deps)
        except BuildprintError as exc:
            return Outcome(Decision(node, "build", reason="bad input"), "failed", error=str(exc))
        signed = time.monotonic() - started
        prefetched = decision.action == "reuse" and decision.signature in self.fetched
        if prefetched:
            # Found locally now because the run fetched it before it started.
            decision = replace(decision, action="fetch", reason="same signature in a remote cache")
        if progress:
            progress("start", decision)
        try:
            note = None
            if decision.action == "fetch" and not prefetched:
                note = self._fetch_failure(decision)
            if decision.action == "reuse":
                assert decision.record is not None
                self._place(decision.record)
                outcome = Outcome(decision, "reused", decision.record)
            elif decision.action == "fetch" and note is None:
                assert decision.record is not None
                self._place(decision.record)
                outcome = Outcome(decision, "fetched", decision.record)
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
        """Put a stored build's wheels in the wheelhouse (a no-op when they are there)."""
        for artifact in record.artifacts:
            blob = self.store.blob_path(artifact.sha256)
            if blob is None:
                raise BuildFailed(f"{record.name}: stored wheel {artifact.filename} is missing")
            self.wheelhouse.add(blob, artifact.filename, artifact.sha256)

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
            stored = None if forced else self.store.get_record(signature)
            if stored is not None:
                self._place(stored)
                note = "built by another buildprint process meanwhile; reused"
                return Outcome(decision, "reused", stored, note=note)
            return self._build(decision, deps)

    def _build(self, decision: Decision, deps: Mapping[str, DepResult]) -> Outcome:
        node = decision.node
        manifest = decision.manifest
        assert manifest is not None
        # A folder of this build's own: other processes may build the same package in the
        # same store. The tree inside is always src/<name>-<version>, and the compilers'
        # path remapping makes the wheel independent of where that is.
        work = self.preparer.work_folder(f"{node.name}-{node.version}")
        self.logs.mkdir(parents=True, exist_ok=True)
        log = self.logs / f"{node.name}-{node.version}.log"
        log.unlink(missing_ok=True)
        try:
            root = self.preparer.source_tree(node.source, node.patches, work / "src")
            hooks = self.planner.collector.hooks(node)
            view = node.view
            # The declared variables, update_env's answer included (it ran at plan time).
            env = self.planner.collector.build_env(node)
            if hooks is not None and "prepare_source" in hooks:
                _build_time_hook(hooks, "prepare_source", env, view, root)
            benv = self.preparer.environment(
                locked_wheels(node), self._dep_wheels(node, deps, work / "deps"), work
            )
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)
            if hooks is not None and "build_wheel" in hooks:
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
                )
            check_built_wheel(built, node.name, node.version, self.preparer.tags)
            final = embed_manifest(built, manifest.to_bytes(), work / "final")
            sha = self.store.put_blob(final)
            record = ActionRecord(
                signature=manifest.signature,
                name=node.name,
                version=node.version,
                manifest=manifest.to_json(),
                artifacts=(
                    Artifact(final.name, sha, final.stat().st_size, artifact_digest(final)),
                ),
            )
            self.store.put_record(record)
            self.wheelhouse.add(final, final.name, sha)
            if self.push is not None:
                self.push(record)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return Outcome(decision, "built", record, log=log if log.exists() else None)

    def _dep_wheels(
        self, node: PackageNode, deps: Mapping[str, DepResult], folder: Path
    ) -> list[tuple[Path, str]]:
        """Wheels (path, sha256) of the dependencies built in this graph — exactly the builds
        this package's signature was computed against — from the store, under their names."""
        folder.mkdir(parents=True, exist_ok=True)
        found = []
        for dep in node.deps:
            signature = deps[dep].signature
            record = self.store.get_record(signature) if signature else None
            if record is None:
                raise BuildFailed(f"{node.name}: dependency {dep} has no stored wheel")
            for artifact in record.artifacts:
                blob = self.store.blob_path(artifact.sha256)
                if blob is None:
                    raise BuildFailed(f"{node.name}: wheel of {dep} is missing from the store")
                target = folder / artifact.filename
                shutil.copyfile(blob, target)
                found.append((target, artifact.sha256))
        return found


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
