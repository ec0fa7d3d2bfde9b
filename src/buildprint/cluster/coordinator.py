"""The coordinator's side of a cluster build: each package to build becomes one Dask task.

The local process plans as always; the builder hands this module only the packages it
decided to build, once their dependencies have finished (an artifact-mode dependent's
signature is known only then). For each, the inputs are uploaded to the shared remote's CAS,
then a :class:`~buildprint.cluster.spec.TaskSpec` naming them by digest; the task carries
that digest. The task's key is the package and its signature, so two coordinators submitting
the same build to one scheduler share one task. The record the worker pushed is then looked
up on the remote (verified against the trusted keys) and fetched like any remote build.

Dask is imported on the first build submitted: a run that reuses or fetches everything never
connects to the cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import importlib
import itertools
import os
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import buildprint
from buildprint.builder.preparer import Preparer, copy_source_folder
from buildprint.cluster.spec import DepSpec, SourceSpec, TaskSpec, lock_entry_data
from buildprint.errors import BuildFailed, BuildprintError
from buildprint.inputs.env import is_secret_name
from buildprint.inputs.files import file_digest
from buildprint.plan.decision import Decision
from buildprint.plan.graph import PackageNode
from buildprint.plan.inputs import DepResult, locked_wheels
from buildprint.store.record import ActionRecord

if TYPE_CHECKING:
    from distributed import Client

    from buildprint.plan.inputs import InputCollector
    from buildprint.project.project import Project
    from buildprint.resolve.sources import SourceResolver
    from buildprint.store.cache import RemoteCache
    from buildprint.store.remote import Remote

__all__ = ["WORKER_TASK", "ClusterBuild", "ClusterExecutor", "scheduler_address"]

#: How many workers may refuse one task (each for a reason of its own) before it fails.
_MAX_REFUSALS = 8


@dataclass(frozen=True)
class ClusterBuild:
    """A build done on the cluster: the record the shared remote holds, and where."""

    record: ActionRecord
    worker: str
    note: str | None = None
    #: How long the build took on the worker (the rest of the task's time is the cluster's
    #: and the uploads', downloads').
    seconds: float | None = None
    #: False when the worker found the build made already (by another run, or by itself
    #: before): this run fetched it.
    built: bool = True
    #: How long it waited for a free worker thread before it was submitted.
    queued: float = 0.0


def scheduler_address(url: str) -> str:
    """``dask://HOST:PORT`` as Dask writes it (``tcp://HOST:PORT``)."""
    return "tcp://" + url.removeprefix("dask://")


class ClusterExecutor:
    """Builds packages as tasks on the Dask scheduler at ``url``, sharing ``remote`` (a
    writable remote of ``cache``) with its workers."""

    def __init__(
        self,
        url: str,
        *,
        remote: Remote,
        remote_url: str,
        cache: RemoteCache,
        project: Project,
        resolver: SourceResolver,
        preparer: Preparer,
        collector: InputCollector,
        logs: Path,
        scratch: Path,
        connect_timeout: float = 30.0,
        force: frozenset[str] = frozenset(),
    ) -> None:
        self.url = url
        self.remote = remote
        self.remote_url = remote_url  # as configured, credentials removed: workers have theirs
        self.cache = cache
        self.project = project
        self.resolver = resolver
        self.preparer = preparer
        self.collector = collector
        self.logs = logs
        self.scratch = scratch
        self.connect_timeout = connect_timeout
        self.force = force  # packages the run rebuilds whatever is stored
        self._client: Client | None = None
        self._connect_error: BuildprintError | None = None
        self._lock = threading.Lock()
        self._present: set[str] = set()  # blobs known to be on the remote
        self._trees: dict[str, tuple[str, Path]] = {}  # source digest -> (blob, tar file)
        self._pushed: set[str] = set()  # dependency records known to be on the remote
        self._threads_seen = (float("-inf"), 0)
        #: Builds in flight: at most one per worker thread, the longest chains first, so a
        #: task is handed to a worker when one is free (not queued behind another's work).
        self._slots = _Slots(lambda: self._threads(self.client()))

    # -- the cluster -------------------------------------------------------------------------

    def client(self) -> Client:
        """The scheduler's client, connected on first use (a failure is kept: every build
        of the run reports it without waiting again)."""
        with self._lock:
            if self._client is not None:
                return self._client
            if self._connect_error is not None:
                raise self._connect_error
            from distributed import Client  # the engine checked that it is installed

            try:
                self._client = Client(
                    scheduler_address(self.url),
                    timeout=self.connect_timeout,
                    set_as_default=False,
                )
            except (OSError, TimeoutError) as exc:
                self._connect_error = BuildFailed(
                    f"cannot reach the Dask scheduler at {self.url}: {exc}"
                )
                raise self._connect_error from None
            return self._client

    def warm_up(self) -> None:
        """Import Dask and connect in the background (the run is about to build): the first
        builds then find the client ready, or its error."""

        def connect() -> None:
            with contextlib.suppress(BuildprintError):
                self.client()

        threading.Thread(target=connect, name="buildprint-dask-connect", daemon=True).start()

    def _threads(self, client: Client) -> int:
        """The cluster's worker threads (looked up at most once a second)."""
        now = time.monotonic()
        with self._lock:
            if now - self._threads_seen[0] < 1.0:
                return self._threads_seen[1]
        try:
            workers = client.scheduler_info(n_workers=-1)["workers"]
        except Exception:  # the scheduler went away: the tasks in flight will say so
            return self._threads_seen[1]
        count = sum(int(info.get("nthreads", 1)) for info in workers.values())
        with self._lock:
            self._threads_seen = (now, count)
        return count

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        shutil.rmtree(self.scratch, ignore_errors=True)

    # -- one build ---------------------------------------------------------------------------

    def build(
        self, decision: Decision, deps: Mapping[str, DepResult], priority: int = 0
    ) -> ClusterBuild:
        """Build ``decision``'s package on a worker; the record the shared remote then holds.
        Its inputs are uploaded first; the task is submitted when a worker thread is free,
        the highest ``priority`` (the longest chain of dependents) first. A worker that
        refuses (another signature, another buildprint) is left out and the task goes to the
        others; a worker that dies is replaced by Dask."""
        node, signature = decision.node, decision.signature
        assert signature is not None and decision.manifest is not None
        ticket = self._slots.preparing(priority)
        try:
            client = self.client()  # before anything is uploaded for it
            (self.logs / f"{node.name}-{node.version}.log").unlink(missing_ok=True)
            spec = self._spec(decision, deps)
            blob = self._upload_bytes(spec.to_bytes())
        except BaseException:
            self._slots.withdraw(ticket)
            raise
        if node.settings.resources:  # waits for its own workers, not for a general slot
            self._slots.withdraw(ticket)
            return self._run(client, decision, spec, blob, priority, 0.0)
        with self._slots.held(ticket, handoff=priority - 1) as queued:
            return self._run(client, decision, spec, blob, priority, queued)

    def _run(
        self,
        client: Client,
        decision: Decision,
        spec: TaskSpec,
        blob: str,
        priority: int,
        queued: float,
    ) -> ClusterBuild:
        node, signature = decision.node, spec.signature
        refused: dict[str, str] = {}
        key = f"buildprint-{node.name}-{node.version}-{signature}"
        while True:
            restrict = self._candidates(client, node, refused) if refused else None
            future = None
            try:
                future = client.submit(
                    _worker_task,
                    blob,
                    spec.remote,
                    buildprint.__version__,
                    key=key if not refused else f"{key}-{_digest_of(sorted(refused))}",
                    resources=dict(node.settings.resources) or None,
                    workers=restrict,
                    allow_other_workers=False,
                    priority=priority,
                    pure=False,
                )
                result: dict[str, Any] = future.result()
            except Exception as exc:  # KilledWorker, CancelledError, the scheduler gone
                raise BuildFailed(f"the cluster task failed: {exc!r}") from None
            finally:
                if future is not None:
                    future.release()
            status = result.get("status")
            worker = str(result.get("worker"))
            if status == "refused":
                refused[str(result.get("address"))] = f"{worker}: {result.get('reason')}"
                if len(refused) >= _MAX_REFUSALS:
                    raise BuildFailed(self._refusals(refused))
                continue
            if status == "failed":
                self._keep_log(node, result.get("log"))
                raise BuildFailed(f"{result.get('error')} (on worker {worker})")
            seconds = result.get("seconds")
            return ClusterBuild(
                self._record(node, signature, result),
                worker,
                self._note(result, refused),
                float(seconds) if isinstance(seconds, int | float) else None,
                built=status == "built",
                queued=queued,
            )

    def _candidates(
        self, client: Client, node: PackageNode, refused: Mapping[str, str]
    ) -> list[str]:
        """The workers that have not refused ``node`` and have the resources it needs."""
        wanted = node.settings.resources
        try:
            workers = client.scheduler_info(n_workers=-1)["workers"]
        except Exception as exc:  # the scheduler went away
            raise BuildFailed(f"the cluster task failed: {exc!r}") from None
        found = [
            address
            for address, info in workers.items()
            if address not in refused
            and all(info.get("resources", {}).get(k, 0) >= v for k, v in wanted.items())
        ]
        if not found:
            raise BuildFailed(self._refusals(refused))
        return found

    @staticmethod
    def _refusals(refused: Mapping[str, str]) -> str:
        said = "; ".join(refused.values())
        return f"no worker of the cluster accepts the task ({said})"

    @staticmethod
    def _note(result: Mapping[str, Any], refused: Mapping[str, str]) -> str | None:
        """What the summary says besides where it was built: workers that refused it, or
        that another run had built it meanwhile."""
        said = [f"refused by {reason}" for reason in refused.values()]
        if result.get("status") == "found":
            said.append("built meanwhile by another run; found on the remote")
        elif result.get("status") == "reused":
            said.append("built by this worker before; shared again")
        return "; ".join(said) or None

    def _record(self, node: PackageNode, signature: str, result: Mapping[str, Any]) -> ActionRecord:
        """The worker's record, as the shared remote holds it (verified): under the key the
        worker names (its variant's, when its system files made one), of ``signature``."""
        key = result.get("record")
        key = key if isinstance(key, str) else signature
        record, problem = self.cache.lookup_at(self.remote, key)
        if record is not None and record.manifest_signature != signature:
            problem = f"the record at {key} is of {record.manifest_signature}"
            record = None
        if record is not None:
            with self._lock:
                self._pushed.add(signature)  # its dependents' workers find it there
            return record
        worker = result.get("worker")
        if problem is not None and "untrusted" in problem:
            key = result.get("key") or "no signing key"
            raise BuildFailed(
                f"worker {worker} pushed its build, but its record on {self.remote.url} is "
                f"signed by a key this project does not trust (the worker signs with {key}: "
                "list it in [[remote]] trusted-keys)"
            )
        raise BuildFailed(
            f"worker {worker} pushed its build, but the shared remote {self.remote.url} "
            f"does not give it back: {problem or 'no record under its signature'}"
        )

    def _keep_log(self, node: PackageNode, text: object) -> None:
        if isinstance(text, str) and text:
            self.logs.mkdir(parents=True, exist_ok=True)
            (self.logs / f"{node.name}-{node.version}.log").write_text(text)

    # -- the task's inputs -------------------------------------------------------------------

    def _spec(self, decision: Decision, deps: Mapping[str, DepResult]) -> TaskSpec:
        node = decision.node
        assert decision.manifest is not None and decision.signature is not None
        for dep in node.deps:
            self._ensure_pushed(deps[dep].signature)
        settings = node.settings.model_dump(by_alias=True, exclude={"source"})
        secret = sorted(name for name in node.settings.env if is_secret_name(name))
        settings["env"] = {k: v for k, v in node.settings.env.items() if k not in secret}
        pins = locked_wheels(node)
        wheels = {
            pin.filename: self._upload(path, pin.sha256)
            for pin, path in zip(pins, self.preparer.wheels(pins), strict=True)
        }
        return TaskSpec(
            buildprint=buildprint.__version__,
            name=node.name,
            version=node.version,
            signature=decision.signature,
            manifest=decision.manifest.to_json(),
            project=self._project_settings(),
            settings=settings,
            secret_env=secret,
            files=self._plugin_files(node),
            source=self._source(node),
            patches={p.name: self._upload(p) for p in node.patches},
            locked=lock_entry_data(node.locked),
            wheels=wheels,
            deps=[
                DepSpec(d, deps[d].version, deps[d].signature, deps[d].artifact) for d in node.deps
            ],
            install_deps=list(node.install_deps),
            remote=self.remote_url,
            trusted_keys=sorted(self.cache.trusted_keys),
            force=node.name in self.force,
        )

    def _project_settings(self) -> dict[str, Any]:
        """What of ``buildprint.toml`` a worker reads: the build interpreter, the archive
        limits and the signature policy (no index, remotes or folders: not its own)."""
        settings = self.project.settings
        project = settings.project.model_dump(
            by_alias=True,
            exclude_none=True,
            include={"python", "max_unpacked_size", "max_expansion_ratio"},
        )
        return {
            "project": project,
            "signature": settings.signature.model_dump(by_alias=True, exclude_none=True),
        }

    def _plugin_files(self, node: PackageNode) -> dict[str, str]:
        """The project's modules the package's plugin (and the host hook) were read from,
        with the packages' ``__init__.py`` files above them."""
        root = self.project.root.resolve()
        wanted: set[Path] = set()
        modules = [node.settings.plugin, self.project.settings.signature.host_hook]
        for module in filter(None, modules):
            for name in self.collector.code_files.get(module, {}):
                path = Path(name).resolve()
                if path.is_file() and path.is_relative_to(root):
                    wanted.add(path)
                    for parent in path.parents:
                        if parent == root or not parent.is_relative_to(root):
                            break
                        if (parent / "__init__.py").is_file():
                            wanted.add(parent / "__init__.py")
        return {str(p.relative_to(root)): self._upload(p) for p in sorted(wanted)}

    def _source(self, node: PackageNode) -> SourceSpec:
        source = node.source
        located = self.resolver.fetch(source)
        if located.is_dir():
            blob, tar = self._tree(node, located)
            kind, filename = "tree", tar.name
        else:
            blob = self._upload(located, source.raw_sha256)
            kind, filename = "archive", located.name
        return SourceSpec(
            kind=kind,
            blob=blob,
            filename=filename,
            location=source.location,
            digest=source.digest,
            files=source.files,
            size=source.size,
            raw_sha256=source.raw_sha256,
            commit=source.commit,
            ref=source.ref,
        )

    def _tree(self, node: PackageNode, located: Path) -> tuple[str, Path]:
        """A tar of exactly the entries the source digest covers (copied by the walk that
        digests them, and refused if they changed since the plan), uploaded once per run."""
        source = node.source
        with self._lock:
            known = self._trees.get(source.digest)
        if known is not None:
            return known
        folder = self.scratch / f"tree-{source.digest[:16]}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        root = copy_source_folder(source, located, folder)
        tar = folder.with_suffix(".tar")
        with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as archive:
            archive.add(root, arcname=root.name, filter=_plain_member)
        shutil.rmtree(folder, ignore_errors=True)
        blob = self._upload(tar)
        with self._lock:
            self._trees[source.digest] = (blob, tar)
        return blob, tar

    def _ensure_pushed(self, signature: str | None) -> None:
        """A dependency's record on the shared remote (a worker takes its wheel from there):
        pushed now when it was reused from this machine's store only."""
        if signature is None:
            return
        with self._lock:
            if signature in self._pushed:
                return
        if self.remote.get_record(signature) is None:
            record = self.cache.local.get_record(signature)
            if record is None:
                raise BuildFailed(f"dependency build {signature} is in no store")
            landed = self.cache.push(record)
            if self.remote.url not in landed:
                raise BuildFailed(
                    f"dependency build {record.name} {record.version} could not be pushed "
                    f"to the shared remote {self.remote.url} for the workers"
                )
        with self._lock:
            self._pushed.add(signature)

    def _upload(self, path: Path, sha256: str | None = None) -> str:
        """Put ``path`` in the shared remote's CAS (once per run); its sha256."""
        sha = sha256 or file_digest(path)
        with self._lock:
            if sha in self._present:
                return sha
        self.remote.put_blob(sha, path)  # a no-op when the remote has it
        with self._lock:
            self._present.add(sha)
        return sha

    def _upload_bytes(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.scratch.mkdir(parents=True, exist_ok=True)
        path = self.scratch / f"spec-{sha}"
        path.write_bytes(data)
        try:
            return self._upload(path, sha)
        finally:
            path.unlink(missing_ok=True)


#: What a worker runs, named: the worker's side drives an :class:`~buildprint.engine.Engine`
#: of its own (it stands above the engine, as the CLI does), and this module, which the
#: engine opens, does not import it.
WORKER_TASK = "buildprint.cluster.worker:run_task"


def _worker_task(*args: str) -> dict[str, Any]:
    """The task Dask runs on a worker: :data:`WORKER_TASK`, imported there."""
    module, name = WORKER_TASK.split(":")
    task: Callable[..., dict[str, Any]] = getattr(importlib.import_module(module), name)
    return task(*args)


class _Slots:
    """At most ``count()`` builds in flight; a free slot goes to the waiting build of the
    highest priority (the longest chain of dependents), then the earliest.

    A build announces itself (:meth:`preparing`) before its inputs are uploaded, and a
    build of lower priority does not take a slot while one of higher priority prepares, for
    up to ``HOLD`` seconds: the critical path is not overtaken during its own uploads. A
    released slot is likewise held that long for the releaser's most urgent dependent,
    which its result has just made ready (``handoff``)."""

    HOLD = 2.0

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count
        self._busy = 0
        self._waiting: list[tuple[int, int]] = []
        self._preparing: dict[int, tuple[int, float]] = {}  # ticket -> (priority, since)
        self._tickets = itertools.count()
        self._changed = threading.Condition()

    def preparing(self, priority: int) -> int:
        """Announce a build of ``priority``; its ticket for :meth:`held`."""
        ticket = next(self._tickets)
        with self._changed:
            # A hand-off held for this priority (or a lower one) is now this build's.
            for other, (held, _since) in list(self._preparing.items()):
                if other < 0 and held <= priority:
                    del self._preparing[other]
            self._preparing[ticket] = (priority, time.monotonic())
        return ticket

    def withdraw(self, ticket: int) -> None:
        """A build announced that will not wait for a slot after all."""
        with self._changed:
            self._preparing.pop(ticket, None)
            self._changed.notify_all()

    @contextlib.contextmanager
    def held(self, ticket: int, handoff: int = 0) -> Iterator[float]:
        """Wait for a slot (yields how long that took); on release, hold it for a build of
        priority ``handoff`` (0: none)."""
        started = time.monotonic()
        with self._changed:
            priority, _since = self._preparing.pop(ticket, (0, started))
            place = (-priority, ticket)
            heapq.heappush(self._waiting, place)
            try:
                while not self._may_enter(place, priority):
                    self._changed.wait(timeout=0.25)  # also: holds expire, workers join
            finally:
                self._waiting.remove(place)
                heapq.heapify(self._waiting)
            self._busy += 1
            self._changed.notify_all()
        try:
            yield time.monotonic() - started
        finally:
            with self._changed:
                self._busy -= 1
                if handoff > 0:
                    self._preparing[-next(self._tickets) - 1] = (handoff, time.monotonic())
                self._changed.notify_all()

    def _may_enter(self, place: tuple[int, int], priority: int) -> bool:
        if self._waiting[0] != place or self._busy >= max(1, self._count()):
            return False
        now = time.monotonic()
        for other, (waiting, since) in list(self._preparing.items()):
            if now - since >= self.HOLD:
                if other < 0:
                    del self._preparing[other]  # an unclaimed hand-off lapses
                continue
            if waiting > priority:
                return False
        return True


def _digest_of(items: list[str]) -> str:
    return hashlib.sha256("\0".join(items).encode()).hexdigest()[:16]


def _plain_member(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """No owner names or ids in the tar: the worker's extraction does not use them."""
    member.uid = member.gid = 0
    member.uname = member.gname = ""
    return member
