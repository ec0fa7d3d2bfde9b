"""End to end: a build killed with SIGKILL leaves no record claiming to be up to date."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from buildprint.store.local import LocalStore
from tests.support.cli import PackageSpec, build, plan, start_cli, write_project

# setup.py runs inside the PEP 517 backend; in the wheel build it tells the test it started,
# then sleeps long enough to be killed mid-build. The package env hands it SLOW_MARKER.
SLOW_SETUP = """\
import os
import sys
import time
from pathlib import Path

from setuptools import setup

marker = os.environ.get("SLOW_MARKER")
# Only the wheel build sleeps, not the backend's get_requires call made while locking.
if marker and os.environ.get("SLOW_SLEEP") == "1" and "bdist_wheel" in sys.argv:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(120)
setup()
"""


@pytest.mark.slow
def test_killed_build_leaves_no_record_and_is_built_next_time(
    tmp_path: Path, backend_wheels: Path
) -> None:
    marker = tmp_path / "started"
    project = write_project(
        tmp_path / "project",
        backend_wheels,
        [
            PackageSpec("fast"),
            PackageSpec(
                "sleepy",
                files={"setup.py": SLOW_SETUP},
                settings=f'env = {{ SLOW_MARKER = "{marker}", SLOW_SLEEP = "1" }}\n',
            ),
        ],
    )
    process = start_cli(project, "build", "--json", quiet=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert process.poll() is None, f"build ended early with {process.returncode}"
            assert time.monotonic() < deadline, "the slow build never started"
            time.sleep(0.1)
        process.kill()  # buildprint alone: its build must die with it
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -signal.SIGKILL
    backend = int(marker.read_text())
    deadline = time.monotonic() + 15
    while _alive(backend):
        assert time.monotonic() < deadline, f"backend {backend} outlived buildprint"
        time.sleep(0.1)

    store = project / ".buildprint"
    with LocalStore(store) as local:
        # verify now reports the killed run's work folders (they were silently left before);
        # nothing else is wrong, and the next run's sweep removes them (last verify below).
        problems = local.verify()
        assert problems and all("orphaned temp folder" in p for p in problems), problems
        assert local.find("sleepy") == []
    entries = plan(project)
    assert entries["sleepy"]["action"] == "build"
    assert entries["fast"]["action"] == "reuse"  # finished before the kill (dependency order)
    assert not list((project / "wheelhouse").glob("sleepy-*.whl"))

    # The next run builds it (without the sleep) and the store is still sound.
    settings = project / "packages" / "sleepy.toml"
    settings.write_text(settings.read_text().replace('SLOW_SLEEP = "1"', 'SLOW_SLEEP = "0"'))
    done = build(project)
    assert done["sleepy"]["action"] == "built"
    assert done["fast"]["action"] == "reused"
    with LocalStore(store) as local:
        assert local.verify() == []


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
