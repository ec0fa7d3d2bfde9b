"""Benchmark: 40 slow builds on a Dask cluster of 4 single-thread workers (cluster executor).

Forty local sdists whose ``build_wheel`` sleeps 2 s (standing for long builds; their
``get_requires_for_build_wheel`` does not, so locking stays quick), chains and fan-outs mixed
through build requirements (artifact mode: a package waits for the graph packages it builds
with), built by ``buildprint build --json --executor dask://...`` on a real ``dask scheduler``
and four ``dask worker`` processes (one thread each, own ``HOME`` and store) sharing an nginx
WebDAV remote (``tests/support/servers``). Targets (the cluster issue): the makespan within
1.15x of the lower bound max(critical path, total work / workers), and the coordinator's
overhead per task under 100 ms.

The graph (``GRAPH``, 40 packages, letters-only names so that each is a task group of its own
in Dask, as real package names mostly are): a chain of 8, a root with 9 dependents, a chain
of 3 with 6 dependents on its top, a fan-in (two roots, one package building with both, a
chain of 2 above it) and 8 packages on their own.

Steps: the sdists are made by ``tests/support/cli.py`` (an in-tree backend ``_backend/
slowbuild.py`` whose build sleeps, then writes a minimal wheel by hand, leaving the CPU to
the coordinator as a build on another machine would; the sleep is the package's settings ``env``
``BENCH_BUILD_SLEEP``), the index is the test suite's wheel cache (offline). ``buildprint
lock`` runs untimed in a copy of the project without that variable and without the remote:
locking a package runs its backend with its build requirements installed, so the graph
packages it builds with are built first (by ``build_now``), and there they are built without
the sleep, into a store of their own, under other signatures. The copy's ``buildprint.lock``
(keyed by source digests, which the settings do not change) goes to the project, and to
``<cache>/cluster-bench.lock``: the next run's lock step starts from it (a no-op while it is
valid; locking from nothing takes 1-2 minutes here). Then ``buildprint --version`` and
``buildprint plan --json`` twice (start-up and planning: the part of the build command that is
not the cluster's), and the timed ``buildprint build --json --executor``. Afterwards the
scheduler's transition log, task stream and work-stealing events give, per task, when the
scheduler got it, when a worker ran it (and whether Dask moved it there) and when it ended.

Figures: total work = the sum of ``worker_seconds``; critical path = the longest path of
``GRAPH`` weighted by them; lower bound = max(critical path, work / workers). The makespan
target is judged on the build part (the command's wall time less the warm plan's); the whole
command and the scheduler's span (first task received to last done) are shown too. Overhead
per task: ``seconds - worker_seconds`` as the JSON gives it holds the time a task waited for
a free worker (the cluster was full: not overhead), so it is also shown without that wait,
and split into the coordinator's own part (``seconds`` less the task's time on the
scheduler: deciding, uploads, connecting, then lookup, fetch, place), Dask's dispatch, the
task's time on the worker around the build and the report back. Two list schedules of the
same graph with the measured builds and no overhead (ready order, and critical path first)
show how much of the makespan is the order tasks run in.

Run from the repository root: ``python -m bench.bench_cluster [--workers 4] [--sleep 2]
[--cache ~/.cache/buildprint-bench] [--fresh-lock] [--timeline] [--keep]``. Exits non-zero
only when the set-up is wrong (a package not built on a worker, the lock not used as it is);
a missed target is printed as ``MISSED``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.cli import PackageSpec, cli_env, write_project  # noqa: E402
from tests.support.servers._proc import wait_until  # noqa: E402
from tests.support.servers.dask import DaskCluster, signing_key  # noqa: E402
from tests.support.servers.nginx import start_nginx  # noqa: E402
from tests.support.wheels import WHEELS_ENV  # noqa: E402

__all__ = ["GRAPH", "main"]

MAKESPAN_TARGET = 1.15  # makespan / lower bound
OVERHEAD_TARGET = 0.100  # seconds per task

PRIVATE, PUBLIC = signing_key(b"buildprint cluster bench workers")


def _graph() -> dict[str, tuple[str, ...]]:
    """Package -> the graph packages it builds with, in requirements-file order."""
    letters = "abcdefghi"
    graph: dict[str, tuple[str, ...]] = {}
    for i, letter in enumerate(letters[:8]):  # a chain of 8
        graph[f"chain-{letter}"] = (f"chain-{letters[i - 1]}",) if i else ()
    graph["fan-root"] = ()  # a fan-out: one root, 9 dependents
    for letter in letters:
        graph[f"fan-{letter}"] = ("fan-root",)
    graph["tower-a"] = ()  # a chain of 3 with 6 dependents on its top
    graph["tower-b"] = ("tower-a",)
    graph["tower-c"] = ("tower-b",)
    for letter in letters[:6]:
        graph[f"tower-leaf-{letter}"] = ("tower-c",)
    graph["join-left"] = ()  # a fan-in, then a chain of 2
    graph["join-right"] = ()
    graph["join-mid"] = ("join-left", "join-right")
    graph["join-top"] = ("join-mid",)
    graph["join-peak"] = ("join-top",)
    for letter in letters[:8]:  # on their own
        graph[f"solo-{letter}"] = ()
    return graph


GRAPH = _graph()

_BACKEND = '''"""A PEP 517 backend whose build is a sleep (a long build that leaves the CPU to the
coordinator, as a remote machine's build would), then a minimal pure wheel, written by hand."""

import base64
import hashlib
import os
import time
import zipfile
from email.parser import Parser


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    time.sleep(float(os.environ.get("BENCH_BUILD_SLEEP", "0")))
    with open("PKG-INFO", encoding="utf-8") as handle:
        info = Parser().parse(handle)
    name, version = info["Name"], info["Version"]
    dist = name.replace("-", "_")
    info_dir = f"{dist}-{version}.dist-info"
    files = {
        f"{dist}/__init__.py": f"__version__ = {version!r}\\n".encode(),
        f"{info_dir}/METADATA": (
            f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n"
        ).encode(),
        f"{info_dir}/WHEEL": (
            b"Wheel-Version: 1.0\\nGenerator: bench\\nRoot-Is-Purelib: true\\n"
            b"Tag: py3-none-any\\n"
        ),
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(data)}")
    record.append(f"{info_dir}/RECORD,,")
    files[f"{info_dir}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    filename = f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as wheel:
        for path, data in files.items():
            wheel.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), data)
    return filename
'''


def _specs(sleep: float | None) -> list[PackageSpec]:
    specs = []
    for name, deps in GRAPH.items():
        requires = ", ".join(f'"{r}"' for r in deps)
        pyproject = (
            f"[build-system]\nrequires = [{requires}]\n"
            'build-backend = "slowbuild"\nbackend-path = ["_backend"]\n\n'
            f'[project]\nname = "{name}"\nversion = "1.0"\nrequires-python = ">=3.8"\n'
        )
        settings = "" if sleep is None else f'env = {{ BENCH_BUILD_SLEEP = "{sleep}" }}\n'
        files = {"pyproject.toml": pyproject, "_backend/slowbuild.py": _BACKEND}
        specs.append(PackageSpec(name, files=files, settings=settings))
    return specs


def _wheels() -> Path:
    """The test suite's cache of backend wheels (``backend_wheels``), the project's index."""
    folder = Path(os.environ.get(WHEELS_ENV) or Path.home() / ".cache/buildprint-tests/wheels")
    if not any(folder.glob("setuptools-*.whl")):
        folder.mkdir(parents=True, exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
        subprocess.run(
            [*pip, "--only-binary", ":all:", "--dest", str(folder), "setuptools"],
            check=True,
        )
    return folder


def _environment() -> None:
    """This checkout's buildprint for the bench's commands and the workers; byte-code kept
    (else every interpreter compiles buildprint from source at start), out of the tree."""
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), path]))
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ.setdefault(
        "PYTHONPYCACHEPREFIX", str(Path.home() / ".cache" / "buildprint-bench" / "pycache")
    )


def _code_state() -> str:
    """A fingerprint of this checkout's buildprint modules (path, size, mtime): an edit
    during the run means the commands (or the workers, which imported it at start) ran
    other code."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "src" / "buildprint").rglob("*.py")):
        info = path.stat()
        digest.update(f"{path}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:12]


@dataclass
class Run:
    """One finished command: its wall time (``time.time()`` at both ends) and output."""

    started: float
    ended: float
    code: int
    stdout: str
    stderr: str

    @property
    def seconds(self) -> float:
        return self.ended - self.started


def _buildprint(project: Path, *args: str, timeout: float = 600) -> Run:
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "buildprint", *args],
        cwd=project,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(started, time.time(), done.returncode, done.stdout, done.stderr)


def _checked(project: Path, *args: str) -> Run:
    run = _buildprint(project, *args)
    if run.code != 0:
        sys.exit(f"buildprint {' '.join(args)} exited {run.code}:\n{run.stdout}\n{run.stderr}")
    return run


_SCHEDULER_CODE = """
import json, sys
from distributed import Client

def collect(dask_scheduler):
    records = dask_scheduler.get_task_stream()  # the first call starts recording
    log = [(str(t.key), t.start, t.finish, t.timestamp) for t in dask_scheduler.transition_log]
    stream = [
        {"key": str(r["key"]), "worker": str(r.get("worker")), "status": r.get("status"),
         "startstops": [dict(s) for s in r["startstops"]]}
        for r in records
    ]
    steals = [
        (stamp, str(msg[1]))
        for stamp, msg in dask_scheduler.get_events("stealing")
        if isinstance(msg, tuple) and msg and msg[0] == "confirm"
    ]
    return {"log": log, "stream": stream, "steals": steals}

with Client(sys.argv[1], timeout=20) as client:
    print(json.dumps(client.run_on_scheduler(collect), default=str))
"""


def _scheduler_data(port: int) -> dict[str, Any]:
    """The scheduler's transition log and task stream (the stream records from the first
    call on: call once before the run)."""
    done = subprocess.run(
        [sys.executable, "-c", _SCHEDULER_CODE, f"tcp://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    data: dict[str, Any] = json.loads(done.stdout)
    return data


# -- the figures -------------------------------------------------------------------------------


def _longest(durations: Mapping[str, float]) -> tuple[float, list[str]]:
    """The critical path through GRAPH weighted by ``durations``: its length and packages."""
    best: dict[str, tuple[float, list[str]]] = {}
    for name in GRAPH:  # GRAPH is in dependency order
        before = max((best[d] for d in GRAPH[name]), key=lambda b: b[0], default=(0.0, []))
        best[name] = (before[0] + durations[name], [*before[1], name])
    return max(best.values(), key=lambda b: b[0])


def _simulate(
    durations: Mapping[str, float], workers: int, priority: Callable[[str], float]
) -> float:
    """A list schedule of GRAPH on ``workers`` with no overhead: whenever a worker is free it
    takes the ready package of lowest ``priority`` (ties: the order it became ready)."""
    import heapq

    done: set[str] = set()
    waiting = dict(GRAPH)
    ready: list[tuple[float, int, str]] = []
    running: list[tuple[float, str]] = []
    now, order = 0.0, 0
    while waiting or ready or running:
        for name in [n for n, deps in waiting.items() if all(d in done for d in deps)]:
            del waiting[name]
            heapq.heappush(ready, (priority(name), order, name))
            order += 1
        while ready and len(running) < workers:
            _, _, name = heapq.heappop(ready)
            heapq.heappush(running, (now + durations[name], name))
        now, name = heapq.heappop(running)
        done.add(name)
    return now


def _tails(durations: Mapping[str, float]) -> dict[str, float]:
    """Each package's longest path to the end of the graph (itself included)."""
    users: dict[str, list[str]] = {n: [] for n in GRAPH}
    for name, deps in GRAPH.items():
        for dep in deps:
            users[dep].append(name)
    tails: dict[str, float] = {}
    for name in reversed(GRAPH):
        tails[name] = durations[name] + max((tails[u] for u in users[name]), default=0.0)
    return tails


@dataclass
class Task:
    """One package's build as the coordinator, the scheduler and its worker saw it."""

    name: str
    seconds: float  # coordinator: the package's whole time (decide, upload, task, fetch, place)
    build: float  # worker_seconds: the build on the worker
    worker: str
    received: float  # the scheduler got the task
    computing: float  # its worker started running it
    computed: float  # ... and ended
    finished: float  # the scheduler heard it ended
    queued: float = 0.0  # queued_seconds: waited on the coordinator for a free worker thread
    free_at: float = 0.0  # when its worker could have started it (idle, and it received)
    stolen: bool = False  # moved to its worker by Dask's work stealing

    @property
    def busy_wait(self) -> float:
        """Waiting for a free worker (on the coordinator, then on the scheduler): the
        cluster was full, not an overhead."""
        return self.queued + self.free_at - self.received

    @property
    def coordinator(self) -> float:
        """The coordinator's own part: before the submit (decide, spec, uploads, connect;
        not the wait for a free worker) and after the result (lookup; the wheel is fetched
        and placed in the background)."""
        return self.seconds - (self.finished - self.received) - self.queued

    @property
    def dispatch(self) -> float:
        """From received (and a worker free) to running."""
        return self.computing - self.free_at

    @property
    def wrapper(self) -> float:
        """The task on the worker around the build (inputs, engine, signing again)."""
        return (self.computed - self.computing) - self.build

    @property
    def report(self) -> float:
        return self.finished - self.computed

    @property
    def raw(self) -> float:
        return self.seconds - self.build

    @property
    def overhead(self) -> float:
        """Everything but the build and waiting for a worker."""
        return self.raw - self.busy_wait


def _tasks(packages: Mapping[str, Mapping[str, Any]], data: Mapping[str, Any]) -> list[Task]:
    """Each package's task, from the coordinator's JSON and the scheduler's records. A task's
    key is ``buildprint-NAME-VERSION-SIGNATURE`` (with a suffix when it was submitted again
    after a refusal): received is the first attempt's, the rest the last one's."""
    prefixes = {
        f"buildprint-{p['name']}-{p['version']}-{p['signature']}": name
        for name, p in packages.items()
    }

    def package(key: str) -> str | None:
        return next((n for prefix, n in prefixes.items() if key.startswith(prefix)), None)

    received: dict[str, float] = {}
    finished: dict[str, float] = {}
    for key, _start, finish, stamp in data["log"]:
        name = package(key)
        if name is None:
            continue
        received.setdefault(name, stamp)
        if finish == "memory":
            finished[name] = stamp
    computes: dict[str, tuple[float, float]] = {}
    for record in data["stream"]:
        spans = [s for s in record["startstops"] if s.get("action") == "compute"]
        name = package(record["key"])
        if name is not None and spans:
            computes[name] = (spans[0]["start"], spans[-1]["stop"])
    tasks = []
    for name, entry in packages.items():
        if name not in computes or name not in finished:
            sys.exit(f"the scheduler has no record of {name}'s task")
        tasks.append(
            Task(
                name,
                float(entry["seconds"]),
                float(entry["worker_seconds"]),
                str(entry["worker"]),
                received[name],
                *computes[name],
                finished[name],
                queued=float(entry.get("queued_seconds") or 0.0),
            )
        )
    stolen = {package(key) for _stamp, key in data.get("steals", [])}
    last_end: dict[str, float] = {}
    for task in sorted(tasks, key=lambda t: t.computing):
        task.stolen = task.name in stolen
        task.free_at = max(task.received, last_end.get(task.worker, 0.0))
        last_end[task.worker] = task.computed
    return tasks


def _mark(value: float, target: float) -> str:
    return "met" if value <= target else "MISSED"


def _report(
    build: Run,
    plans: Sequence[Run],
    version: Run,
    tasks: Sequence[Task],
    workers: int,
) -> None:
    durations = {t.name: t.build for t in tasks}
    work = sum(durations.values())
    critical, path = _longest(durations)
    bound = max(critical, work / workers)
    plan = plans[-1].seconds
    first = min(t.received for t in tasks)
    last = max(t.finished for t in tasks)
    span = last - first
    compute_span = max(t.computed for t in tasks) - min(t.computing for t in tasks)
    build_part = build.seconds - plan
    tails = _tails(durations)
    fifo = _simulate(durations, workers, lambda _n: 0.0)
    cp_first = _simulate(durations, workers, lambda n: -tails[n])

    print("\nfigures (s):")
    print(
        f"  total work (sum of worker_seconds)   {work:7.2f}   / {workers} workers = "
        f"{work / workers:6.2f}"
    )
    print(f"  critical path (by worker_seconds)    {critical:7.2f}   ({' > '.join(path)})")
    print(f"  lower bound max(path, work/workers)  {bound:7.2f}")
    firsts = {
        min((t for t in tasks if t.worker == w), key=lambda t: t.computing).name
        for w in {t.worker for t in tasks}
    }
    rest = [t.build for t in tasks if t.name not in firsts] or [0.0]
    print(
        f"  one build (worker_seconds)           median {statistics.median(rest):5.2f} "
        f"(min {min(rest):.2f}); each worker's first: mean "
        f"{statistics.mean(durations[n] for n in firsts):5.2f} (cold imports, environment)"
    )
    print(f"  `buildprint --version` (start-up)    {version.seconds:7.2f}")
    print(
        f"  `buildprint plan --json` (cold, warm) {plans[0].seconds:6.2f}, {plan:6.2f}  "
        "(start-up, graph, plan, remote lookups)"
    )
    print(f"  build command, wall                  {build.seconds:7.2f}")
    print(f"    start to first task on scheduler   {first - build.started:7.2f}")
    print(f"    first task received to last done   {span:7.2f}   (scheduler's clock)")
    print(f"    last task done to exit             {build.ended - last:7.2f}")
    print(f"    workers busy, first start to end   {compute_span:7.2f}")
    print(
        f"  ideal list schedules, no overhead:    FIFO {fifo:6.2f} "
        f"({fifo / bound:.2f}x), critical path first {cp_first:6.2f} ({cp_first / bound:.2f}x)"
    )

    print(f"\nmakespan / lower bound (target <= {MAKESPAN_TARGET}x on the build part):")
    ratio = build_part / bound
    print(
        f"  build part = wall - warm plan        {build_part:7.2f} s  {ratio:5.2f}x  "
        f"{_mark(ratio, MAKESPAN_TARGET)}   <- the target"
    )
    print(
        f"  whole command (planning included)    {build.seconds:7.2f} s  "
        f"{build.seconds / bound:5.2f}x  {_mark(build.seconds / bound, MAKESPAN_TARGET)}"
    )
    print(
        f"  scheduler span (first in, last out)  {span:7.2f} s  {span / bound:5.2f}x  "
        f"{_mark(span / bound, MAKESPAN_TARGET)}"
    )

    title = f"overhead per task, ms ({len(tasks)} tasks; target < {OVERHEAD_TARGET * 1000:.0f} ms)"
    print(f"\n{title:54s}{'mean':>7s} {'median':>7s} {'max':>7s}")

    def row(label: str, values: Sequence[float], note: str = "", judged: bool = False) -> None:
        ms = [statistics.mean(values), statistics.median(values), max(values)]
        mark = ""
        if judged:
            mark = f"  mean {_mark(ms[0], OVERHEAD_TARGET)}, max {_mark(ms[2], OVERHEAD_TARGET)}"
        figures = " ".join(f"{v * 1000:7.0f}" for v in ms)
        print(f"  {label:52s}{figures}{mark}{note}")

    row("seconds - worker_seconds (the JSON)", [t.raw for t in tasks], "  (waits in it)")
    row("the same less waiting for a free worker", [t.overhead for t in tasks], judged=True)
    row("  coordinator: before submit, after result", [t.coordinator for t in tasks], judged=True)
    row("  dispatch: received (and a worker free) to running", [t.dispatch for t in tasks])
    stolen = [t.dispatch for t in tasks if t.stolen]
    if stolen:
        row(f"    of which moved by Dask's work stealing ({len(stolen)})", stolen)
    row("  on the worker, around the build", [t.wrapper for t in tasks])
    row("  worker done to the scheduler knows", [t.report for t in tasks], "  (clock noise)")
    row("waiting for a free worker (not overhead)", [t.busy_wait for t in tasks])
    idle = sum(t.dispatch for t in tasks)
    print(f"  worker time idle while a task was ready for it: {idle:.2f} s")
    on_path = sum(next(t.overhead for t in tasks if t.name == n) for n in path)
    print(f"  overhead along the critical path     {on_path:7.2f} s over {len(path)} tasks")

    print("\nper worker: tasks, build s, run s (task on the worker), first task's wrapper s")
    for worker in sorted({t.worker for t in tasks}):
        mine = sorted((t for t in tasks if t.worker == worker), key=lambda t: t.computing)
        runs = sum(t.computed - t.computing for t in mine)
        print(
            f"  {worker}: {len(mine):3d} {sum(t.build for t in mine):7.2f} {runs:7.2f} "
            f"{mine[0].wrapper:6.2f}"
        )
    slowest = sorted(tasks, key=lambda t: t.overhead, reverse=True)[:5]
    print(
        "largest overheads: "
        + ", ".join(
            f"{t.name} {t.overhead * 1000:.0f} ms (coordinator {t.coordinator * 1000:.0f})"
            for t in slowest
        )
    )


@dataclass
class Setup:
    """A cluster with its workers up, and a locked project sharing a remote with it."""

    project: Path
    cluster: DaskCluster
    workers: list[str]
    lock: Run
    seeded: bool  # the lock step started from the cached lock


def setup(
    work: Path, servers: list[Any], *, workers: int, sleep: float, cache: Path | None
) -> Setup:
    """Start nginx and the cluster (appended to ``servers``, to be stopped), write the project
    and lock it (untimed, in a copy: see the module's doc), seeded with ``cache``'s lock."""
    wheels = _wheels()
    nginx = start_nginx(work / "nginx", user="u", password="p", token="t")
    servers.append(nginx)
    remote = f"{nginx.url}/open/{uuid.uuid4().hex}"
    cluster = DaskCluster(work / "cluster").start()
    servers.append(cluster)
    names = [f"w{i + 1}" for i in range(workers)]
    for name in names:  # started together; each imports Dask for a few seconds
        cluster.add_worker(name, env={"BUILDPRINT_SIGNING_KEY": PRIVATE}, wait=False)

    remote_toml = f'[[remote]]\nurl = "{remote}"\nwrite = true\ntrusted-keys = ["{PUBLIC}"]\n'
    project = write_project(work / "project", wheels, _specs(sleep), project_toml=remote_toml)
    locker = write_project(work / "locker", wheels, _specs(None))
    cached = cache / "cluster-bench.lock" if cache is not None else None
    seeded = cached is not None and cached.is_file()
    if cached is not None and seeded:
        shutil.copyfile(cached, locker / "buildprint.lock")
    lock = _checked(locker, "lock")
    shutil.copyfile(locker / "buildprint.lock", project / "buildprint.lock")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(locker / "buildprint.lock", cached)
    wait_until(lambda: set(names) <= set(cluster.worker_names()), timeout=120, what="workers")
    return Setup(project, cluster, names, lock, seeded)


def _timeline(build: Run, tasks: Sequence[Task]) -> None:
    """Each task, by worker and start: seconds since the command started."""
    print("\ntimeline (s since the build command started): received, ran from-to, done; build")
    for task in sorted(tasks, key=lambda t: (t.worker, t.computing)):
        times = [t - build.started for t in (task.received, task.computing, task.computed)]
        print(
            f"  {task.worker} {task.name:14s} {times[0]:6.2f}  {times[1]:6.2f}-{times[2]:6.2f}"
            f"  {task.finished - build.started:6.2f}; {task.build:5.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=2.0, help="seconds each build sleeps")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "buildprint-bench",
        help="keeps the lock between runs (buildprint lock starts from it: a no-op when valid)",
    )
    parser.add_argument("--fresh-lock", action="store_true", help="lock from nothing")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--timeline", action="store_true", help="print every task's times")
    args = parser.parse_args()

    _environment()
    code = _code_state()
    work = Path(tempfile.mkdtemp(prefix="bp-bench-cluster-"))
    servers: list[Any] = []
    try:
        ready = setup(
            work,
            servers,
            workers=args.workers,
            sleep=args.sleep,
            cache=None if args.fresh_lock else args.cache,
        )
        project, cluster, names = ready.project, ready.cluster, ready.workers
        locked = (project / "buildprint.lock").read_text()
        print(
            f"{len(GRAPH)} packages, build_wheel sleeps {args.sleep:g} s, {args.workers} "
            f"single-thread workers, {os.cpu_count()} CPU cores on this machine (shared by "
            "the workers, scheduler, nginx and coordinator)"
        )
        seeded = "from the cached lock" if ready.seeded else "from nothing"
        print(f"lock (untimed, in a copy without the sleep, {seeded}): {ready.lock.seconds:.1f} s")

        _scheduler_data(cluster.port)  # starts the scheduler's task stream
        version = _checked(project, "--version")
        plans = [_checked(project, "plan", "--json") for _ in range(2)]
        actions = {p["action"] for p in json.loads(plans[-1].stdout)["packages"]}
        if not actions <= {"build", "pending"}:
            sys.exit(f"the plan is not to build everything: {sorted(actions)}")
        load = os.getloadavg()[0]
        build = _checked(project, "build", "--json", "--executor", cluster.url)
        if (project / "buildprint.lock").read_text() != locked:
            sys.exit("the build changed buildprint.lock: the copied lock was not used as it is")
        packages = {p["name"]: p for p in json.loads(build.stdout)["packages"]}
        wrong = {
            n: p["action"]
            for n, p in packages.items()
            if p["action"] != "built" or p.get("worker") not in names
        }
        if wrong or set(packages) != set(GRAPH):
            sys.exit(f"not every package was built on a worker: {wrong}")
        tasks = _tasks(packages, _scheduler_data(cluster.port))
        _report(build, plans, version, tasks, args.workers)
        if args.timeline:
            _timeline(build, tasks)
        print(f"load average (1 min) before the build {load:.1f}, after {os.getloadavg()[0]:.1f}")
        if _code_state() != code:
            print("WARNING: buildprint's modules changed during the run (other edits)")
    finally:
        for server in reversed(servers):
            server.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
