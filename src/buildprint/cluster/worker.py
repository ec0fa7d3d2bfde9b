"""The worker's side of a cluster build: one task, in a Dask worker process.

A task carries the digest of its :class:`~buildprint.cluster.spec.TaskSpec`. The worker
downloads the spec and every input it names from the shared remote's CAS (each verified
against its sha256), writes a project folder of its own (the settings a build reads, the
plugin modules), signs the package again with its own interpreter, toolchain, host and
environment, and builds only when that signature is the coordinator's: otherwise it refuses
and says which components differ. The build is the hermetic builder's, in the worker's own
store (``$BUILDPRINT_WORKER_STORE``, default ``~/.cache/buildprint/worker``); the record and
wheel are pushed to the shared remote, whose conditional create keeps one entry however many
workers (or coordinators) built the signature.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

import buildprint
from buildprint.cluster.spec import TaskSpec
from buildprint.errors import BuildFailed, BuildprintError, InputError
from buildprint.inputs.extract import safe_extract
from buildprint.inputs.patches import patches_value
from buildprint.plan.graph import PackageNode
from buildprint.plan.inputs import DepResult
from buildprint.project.settings import PackageSettings
from buildprint.resolve.sources import ResolvedSource
from buildprint.signature.diff import diff
from buildprint.signature.manifest import Manifest

if TYPE_CHECKING:
    from buildprint.engine import Engine
    from buildprint.store.cache import RemoteCache
    from buildprint.store.remote import Remote

__all__ = ["run_task", "worker_root"]

#: The most of a failed build's log a task returns (its end: where the error is).
_LOG_TAIL = 256 * 1024
_materialise_lock = threading.Lock()
_remotes: dict[str, Remote] = {}


def worker_root() -> Path:
    """Where this worker keeps its store and the inputs it downloaded."""
    given = os.environ.get("BUILDPRINT_WORKER_STORE")
    return Path(given) if given else Path.home() / ".cache" / "buildprint" / "worker"


def run_task(spec_blob: str, remote_url: str, coordinator_version: str) -> dict[str, Any]:
    """Build the package of the spec ``spec_blob`` on the remote at ``remote_url``; what
    happened, as a dict: ``status`` ``built`` | ``found`` (on the remote: another run built
    it meanwhile) | ``reused`` (from this worker's store, pushed again) | ``refused`` |
    ``failed``, the
    ``worker``'s name and ``address``, and a ``reason``, ``error`` or ``log`` to report."""
    name, address = _identity()
    said: dict[str, Any] = {"worker": name, "address": address}
    if coordinator_version != buildprint.__version__:
        return {
            **said,
            "status": "refused",
            "reason": f"this worker runs buildprint {buildprint.__version__}, the coordinator "
            f"{coordinator_version}",
        }
    try:
        return {**said, **_Task(spec_blob, remote_url, worker_root()).run()}
    except BuildprintError as exc:
        return {**said, "status": "failed", "error": str(exc)}


def _identity() -> tuple[str, str]:
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return "local", "local"
    return str(worker.name), str(worker.address)


def _remote(url: str) -> Remote:
    """The remote at ``url``, opened once per worker process (its connections kept)."""
    with _materialise_lock:
        found = _remotes.get(url)
        if found is None:
            from buildprint.store import open_remote

            found = _remotes[url] = open_remote(url, writable=True)
        return found


class _Task:
    def __init__(self, spec_blob: str, remote_url: str, root: Path) -> None:
        self.root = root
        self.remote_url = remote_url
        self.remote = _remote(remote_url)
        self.spec_blob = spec_blob

    def run(self) -> dict[str, Any]:
        spec = TaskSpec.from_bytes(self._blob(self.spec_blob, "spec.json").read_bytes())
        return self._build(spec)

    def _build(self, spec: TaskSpec) -> dict[str, Any]:
        from buildprint.engine import Engine
        from buildprint.options import Options

        missing = [n for n in spec.secret_env if n not in os.environ]
        if missing:
            return {
                "status": "refused",
                "reason": f"{', '.join(missing)} (secret settings of {spec.name}) not set in "
                "this worker's environment: secret values never travel with a task",
            }
        project_dir = self._project(spec)
        # The wheel goes to the remote; a wheelhouse of the task's own is dropped after it.
        (self.root / "wheelhouses").mkdir(parents=True, exist_ok=True)
        wheelhouse = Path(tempfile.mkdtemp(dir=self.root / "wheelhouses"))
        options = Options(
            store=self.root / "store",
            wheelhouse=wheelhouse,
            force=(spec.name,) if spec.force else (),
        )
        try:
            with Engine(project_dir, options) as engine:
                return self._build_in(engine, spec, project_dir)
        finally:
            shutil.rmtree(wheelhouse, ignore_errors=True)

    def _build_in(self, engine: Engine, spec: TaskSpec, project_dir: Path) -> dict[str, Any]:
        """:meth:`_build` in the task's engine."""
        preparer = engine.preparer
        preparer.given = {sha: self._blob(sha, filename) for filename, sha in spec.wheels.items()}
        node = self._node(spec, project_dir)
        cache = engine.remote_cache
        assert cache is not None  # the project names the shared remote
        deps = {d.name: DepResult(d.version, d.signature, d.artifact) for d in spec.deps}
        for dep in spec.deps:  # their wheels go into the build environment
            if dep.signature and not engine.store.has_record(dep.signature):
                record = cache.lookup(dep.signature)
                if record is None:
                    raise BuildFailed(
                        f"dependency {dep.name} ({dep.signature}) is not on "
                        f"the shared remote {self.remote_url} ({'; '.join(cache.problems)})"
                    )
                cache.fetch(record)
        decision = engine.planner.decide(node, deps)
        mine = decision.manifest
        if mine is None or mine.signature != spec.signature:
            return {"status": "refused", "reason": _differences(spec, mine, decision.reason)}
        key = cache.signing_key.public_id if cache.signing_key else None
        # "record": the key the build is stored under (a variant's own, when the system
        # files this worker has are not those of the build first stored under the signature).
        if decision.action == "fetch":  # built meanwhile (another coordinator's task)
            assert decision.record is not None
            return {"status": "found", "key": key, "record": decision.record.signature}
        if decision.action == "reuse":  # built here before: make sure it is shared
            assert decision.record is not None
            cache.push(decision.record)
            self._check_pushed(cache, spec)
            return {"status": "reused", "key": key, "record": decision.record.signature}
        started = time.monotonic()
        outcome = engine.builder.build(decision, deps)
        seconds = time.monotonic() - started
        if outcome.done == "failed" or outcome.record is None:
            return {"status": "failed", "error": outcome.error, "log": _tail(outcome.log)}
        self._check_pushed(cache, spec)
        stored = outcome.record.signature
        return {"status": "built", "key": key, "seconds": seconds, "record": stored}

    def _check_pushed(self, cache: RemoteCache, spec: TaskSpec) -> None:
        refused = [str(r) for r in cache.refusals]
        if refused:
            raise BuildFailed(f"built, but the shared remote refused it: {'; '.join(refused)}")

    def _node(self, spec: TaskSpec, project_dir: Path) -> PackageNode:
        # A worker builds the signature it was given: it never takes another version's wheel.
        settings = {**spec.settings, "reuse": "signature"}
        settings["env"] = {**settings["env"], **{n: os.environ[n] for n in spec.secret_env}}
        patches = [self._blob(blob, name) for name, blob in spec.patches.items()]
        source = spec.source
        if source.kind == "tree":
            local = self._tree(source.blob, source.filename)
        else:
            local = self._blob(source.blob, source.filename)
        return PackageNode(
            name=spec.name,
            version=spec.version,
            settings=PackageSettings.model_validate(settings),
            settings_file=project_dir / "packages" / f"{spec.name}.toml",
            source=ResolvedSource(
                spec.name,
                spec.version,
                source.location,
                source.digest,
                source.files,
                source.size,
                source.raw_sha256,
                local=local,
                commit=source.commit,
                ref=source.ref,
            ),
            patches=patches,
            locked=spec.lock_entry(),
            deps=tuple(d.name for d in spec.deps),
            patch_digests=patches_value(patches),
            install_deps=tuple(spec.install_deps),
        )

    # -- materialising -----------------------------------------------------------------------

    def _blob(self, sha256: str, filename: str) -> Path:
        """The blob ``sha256`` as ``filename`` on this machine (downloaded once, verified)."""
        name = Path(filename).name
        if not name or name in {".", ".."}:
            raise InputError(f"task spec names a file {filename!r}")
        target = self.root / "inputs" / sha256 / name
        if target.is_file():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.part")
        try:
            self.remote.get_blob(sha256, part)  # raises unless the bytes hash to sha256
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        return target

    def _tree(self, sha256: str, filename: str) -> Path:
        """A source tree's tar, extracted once (checked as any archive is)."""
        folder = self.root / "trees" / sha256
        with _materialise_lock:
            if not folder.is_dir():
                tar = self._blob(sha256, filename)
                folder.parent.mkdir(parents=True, exist_ok=True)
                staging = Path(tempfile.mkdtemp(prefix=".tree-", dir=folder.parent))
                try:
                    safe_extract(tar, staging)
                    _settle(staging, folder)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir():
            raise InputError(f"source tree blob {sha256} does not hold one folder")
        return entries[0]

    def _project(self, spec: TaskSpec) -> Path:
        """A project folder holding what the build reads of the coordinator's: the settings
        (as the spec gives them), the shared remote, and the plugin modules."""
        settings = dict(spec.project)
        settings["remote"] = [
            {"url": spec.remote, "write": True, "trusted-keys": list(spec.trusted_keys)}
        ]
        text = tomli_w.dumps(settings)
        key = hashlib.sha256(json.dumps([text, spec.files], sort_keys=True).encode()).hexdigest()
        folder = self.root / "projects" / key
        with _materialise_lock:
            if folder.is_dir():
                return folder
            folder.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".project-", dir=folder.parent))
            try:
                (staging / "buildprint.toml").write_text(text)
                for relative, blob in spec.files.items():
                    target = staging / relative
                    if target.resolve() != target.absolute() or ".." in Path(relative).parts:
                        raise InputError(f"task spec names a project file {relative!r}")
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(self._blob(blob, target.name), target)
                _settle(staging, folder)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return folder


def _settle(staging: Path, folder: Path) -> None:
    """Move a finished ``staging`` folder to ``folder``; another worker process sharing this
    store may have put the same one there first (same digest, same content): keep theirs."""
    try:
        os.replace(staging, folder)
    except OSError:
        if not folder.is_dir():
            raise


def _differences(spec: TaskSpec, mine: Manifest | None, reason: str) -> str:
    """Why this worker's signature is not the coordinator's: the components that differ."""
    if mine is None:
        return f"this worker cannot sign {spec.name}: {reason}"
    theirs = Manifest.from_json(spec.manifest, source="coordinator")
    changes = diff(theirs, mine)
    paths = ", ".join(c.path for c in changes) or "the scheme"
    return (
        f"this worker's signature of {spec.name} differs from the coordinator's in {paths} "
        f"({spec.signature[:12]} -> {mine.signature[:12]})"
    )


def _tail(log: Path | None) -> str | None:
    if log is None or not log.is_file():
        return None
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - _LOG_TAIL))
        return handle.read().decode("utf-8", errors="replace")
