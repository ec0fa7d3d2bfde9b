"""Ctrl-C during a build: exit 130, one line saying so, no traceback, no build left running,
nothing stored for the package that was being built."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from buildprint.store.local import LocalStore
from tests.support.cli import PackageSpec, plan, start_cli, write_project

pytestmark = pytest.mark.slow  # real builds, one of them interrupted

# The wheel build (not the get_requires call made while locking) starts a child that would
# outlive a careless parent, tells the test both pids, then sleeps far longer than the test.
SLEEPY_SETUP = """\
import os
import subprocess
import sys
import time
from pathlib import Path

from setuptools import setup

if "bdist_wheel" in sys.argv:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    marker = Path(os.environ["SLEEPY_MARKER"])
    Path(f"{marker}.tmp").write_text(f"{os.getpid()} {child.pid}")
    os.replace(f"{marker}.tmp", marker)
    time.sleep(300)
setup()
"""


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states")
@pytest.mark.parametrize(
    ("args", "note"),
    [
        ((), " while working on: sleepy"),  # human output: the progress says what ran
        (("--json", "-j", "2"), ""),
    ],
    ids=["human", "json-j2"],
)
def test_sigint_during_a_build_exits_130_and_leaves_nothing_behind(
    tmp_path: Path, backend_wheels: Path, args: tuple[str, ...], note: str
) -> None:
    marker = tmp_path / "started"
    project = write_project(
        tmp_path / "project",
        backend_wheels,
        [
            PackageSpec("fast"),
            PackageSpec(
                "sleepy",
                files={"setup.py": SLEEPY_SETUP},
                settings=f'env = {{ SLEEPY_MARKER = "{marker}" }}\n',
            ),
        ],
    )
    # A session of its own, so the test's own clean-up can end the whole group.
    process = start_cli(project, "build", *args, start_new_session=True)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 180
        # With -j 2 fast builds beside sleepy: wait for it to be stored and placed too.
        while not marker.exists() or not list((project / "wheelhouse").glob("fast-*.whl")):
            assert process.poll() is None, f"build ended early: {process.communicate()}"
            assert time.monotonic() < deadline, "the slow build never started"
            time.sleep(0.1)
        pids = [int(pid) for pid in marker.read_text().split()]
        os.kill(process.pid, signal.SIGINT)  # what Ctrl-C sends, to buildprint alone
        stdout, stderr = process.communicate(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    assert process.returncode == 130, (stdout, stderr)
    lines = stderr.splitlines()
    assert "Traceback" not in stderr and "Aborted" not in stderr, stderr
    assert [line for line in lines if "interrupt" in line] == [f"buildprint: interrupted{note}"]
    assert lines[-1] == f"buildprint: interrupted{note}"
    assert stdout == ""  # no summary table, no half a JSON object
    # The backend and the child it started die with the build, though the signal reached
    # buildprint only (the builds run in sessions of their own).
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running after Ctrl-C: {pids}"
        time.sleep(0.1)

    with LocalStore(project / ".buildprint") as store:
        assert store.find("sleepy") == []  # nothing claims to be a build of it
        assert len(store.find("fast")) == 1  # finished before the interruption: kept
    assert not list((project / "wheelhouse").glob("sleepy-*.whl"))
    entries = plan(project)
    assert entries["sleepy"]["action"] == "build"
    assert entries["fast"]["action"] == "reuse"
