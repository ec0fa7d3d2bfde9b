"""End to end: a SIGKILLed buildprint leaves no build process running (backend or its children)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from buildprint.builder.guard import kill_guarded, run_guarded
from tests.support.cli import BUILDPRINT, PackageSpec, cli_env, plan, write_project

# setup.py runs inside the PEP 517 backend. In the wheel build it starts a child (standing in
# for gcc or ninja), records both pids in MARKER_DIR and sleeps long enough to be killed.
SPAWNING_SETUP = """\
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from setuptools import setup

folder = os.environ.get("MARKER_DIR")
# Only the wheel build sleeps, not the backend's get_requires call made while locking.
if folder and "bdist_wheel" in sys.argv:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    name = os.environ["MARKER_NAME"]
    Path(folder, name + ".tmp").write_text(f"{os.getpid()} {child.pid}")
    os.replace(Path(folder, name + ".tmp"), Path(folder, name))
    time.sleep(300)
setup()
"""


_NEEDS_PROC = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads process states in /proc"
)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie waiting for a reaper does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself hold spaces.
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_gone(pids: Iterable[int], seconds: float) -> list[int]:
    """Wait up to ``seconds`` for every pid to end; return those still running."""
    deadline = time.monotonic() + seconds
    left = list(pids)
    while left and time.monotonic() < deadline:
        left = [pid for pid in left if _alive(pid)]
        time.sleep(0.05)
    return [pid for pid in left if _alive(pid)]


def _kill_all(pids: Iterable[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
@_NEEDS_PROC
def test_sigkilled_buildprint_takes_its_backends_and_their_children_along(
    tmp_path: Path, backend_wheels: Path
) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    sleepers = ("sleepy-a", "sleepy-b")
    project = write_project(
        tmp_path / "project",
        backend_wheels,
        [
            PackageSpec(
                name,
                files={"setup.py": SPAWNING_SETUP},
                settings=f'env = {{ MARKER_DIR = "{markers}", MARKER_NAME = "{name}" }}\n',
            )
            for name in sleepers
        ],
    )
    # Two builds at once: each backend is started from its own worker thread of the pool,
    # which is what a thread-bound parent-death signal would get wrong.
    process = subprocess.Popen(
        [BUILDPRINT, "build", "-j", "2", "--json"],
        cwd=project,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # only so the finally below can clean up after a failure
    )
    started: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not all((markers / name).exists() for name in sleepers):
            assert process.poll() is None, f"build ended early with {process.returncode}"
            assert time.monotonic() < deadline, "the slow builds never started"
            time.sleep(0.1)
        started = [int(pid) for name in sleepers for pid in (markers / name).read_text().split()]
        assert all(_alive(pid) for pid in started)

        os.kill(process.pid, signal.SIGKILL)  # buildprint alone, as the OOM killer would
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        survivors = _wait_gone(started, seconds=10)
        assert survivors == [], f"still running after buildprint died: {survivors}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        _kill_all(started)

    entries = plan(project)
    assert {name: entries[name]["action"] for name in sleepers} == dict.fromkeys(sleepers, "build")
    assert not list((project / "wheelhouse").glob("sleepy_*.whl"))


@_NEEDS_PROC
def test_a_guarded_command_and_its_child_end_with_the_caller(tmp_path: Path) -> None:
    """A caller process runs a command through :func:`run_guarded` from a worker thread and is
    SIGKILLed: the command and its child are gone within seconds. A command that ends on its
    own gives back its exit code and output unchanged."""
    pids = tmp_path / "pids"
    command = (
        "import os, subprocess, sys, time;"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']);"
        f"open({str(pids)!r} + '.tmp', 'w').write(f'{{os.getpid()}} {{child.pid}}');"
        f"os.replace({str(pids)!r} + '.tmp', {str(pids)!r});"
        "time.sleep(300)"
    )
    caller = (
        "import os, sys, threading, time\n"
        "from buildprint.builder.guard import run_guarded\n"
        "worker = threading.Thread(\n"
        f"    target=run_guarded, args=([sys.executable, '-c', {command!r}],),\n"
        "    kwargs={'env': dict(os.environ)}, daemon=True)\n"
        "worker.start()\n"
        "time.sleep(300)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", caller], start_new_session=True)
    started: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not pids.exists():
            assert process.poll() is None, f"caller ended early with {process.returncode}"
            assert time.monotonic() < deadline, "the guarded command never started"
            time.sleep(0.05)
        started = [int(pid) for pid in pids.read_text().split()]
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        assert _wait_gone(started, seconds=10) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        _kill_all(started)

    done = run_guarded(["sh", "-c", "echo out; echo err >&2; exit 3"], env=cli_env())
    assert (done.returncode, done.stdout) == (3, b"out\nerr\n")


@_NEEDS_PROC
def test_kill_guarded_ends_commands_running_on_other_threads(tmp_path: Path) -> None:
    """What an interrupted caller uses: Ctrl-C reaches the main thread only, while builds run
    on workers; kill_guarded ends their commands, children included, and the workers return."""
    pids = tmp_path / "pids"
    command = (
        "import os, subprocess, sys, time;"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']);"
        f"open({str(pids)!r} + '.tmp', 'w').write(f'{{os.getpid()}} {{child.pid}}');"
        f"os.replace({str(pids)!r} + '.tmp', {str(pids)!r});"
        "time.sleep(300)"
    )
    results: list[subprocess.CompletedProcess[bytes]] = []
    worker = threading.Thread(
        target=lambda: results.append(run_guarded([sys.executable, "-c", command], env=cli_env())),
        daemon=True,
    )
    worker.start()
    started: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while not pids.exists():
            assert time.monotonic() < deadline, "the guarded command never started"
            time.sleep(0.05)
        started = [int(pid) for pid in pids.read_text().split()]
        assert kill_guarded() == 1
        worker.join(timeout=10)
        assert not worker.is_alive()
        assert results[0].returncode == -signal.SIGKILL
        assert _wait_gone(started, seconds=10) == []
        assert kill_guarded() == 0
    finally:
        _kill_all(started)


@pytest.mark.slow
@_NEEDS_PROC
def test_interrupted_buildprint_stops_its_builds(tmp_path: Path, backend_wheels: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    project = write_project(
        tmp_path / "project",
        backend_wheels,
        [
            PackageSpec(
                "sleepy",
                files={"setup.py": SPAWNING_SETUP},
                settings=f'env = {{ MARKER_DIR = "{markers}", MARKER_NAME = "sleepy" }}\n',
            )
        ],
    )
    process = subprocess.Popen(
        [BUILDPRINT, "build", "--json"],
        cwd=project,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    started: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not (markers / "sleepy").exists():
            assert process.poll() is None, f"build ended early with {process.returncode}"
            assert time.monotonic() < deadline, "the slow build never started"
            time.sleep(0.1)
        started = [int(pid) for pid in (markers / "sleepy").read_text().split()]
        os.kill(process.pid, signal.SIGINT)  # what Ctrl-C sends
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        assert process.returncode is not None, "buildprint still runs 10 s after Ctrl-C"
        assert _wait_gone(started, seconds=10) == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        _kill_all(started)
