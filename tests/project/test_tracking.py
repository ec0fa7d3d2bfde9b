"""Tracking what plugin code looked at: variables, files opened, probes, volatile acts."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from buildprint.project.tracking import (
    DIRECTORY,
    HookReads,
    content_state,
    is_content,
    probe_digest,
    state_now,
    tracking,
)


def test_variables_files_and_probes_are_recorded(tmp_path: Path, monkeypatch: object) -> None:
    data = tmp_path / "table.txt"
    data.write_text("v1\n")
    folder = tmp_path / "probe-folder"
    folder.mkdir()
    os.environ["BP_TRACKING_TEST"] = "1"
    reads = HookReads()
    with tracking(reads):
        assert os.environ.get("BP_TRACKING_TEST") == "1"
        assert data.read_text() == "v1\n"
        assert folder.exists()
        assert not (tmp_path / "absent").exists()
        listed = os.listdir(tmp_path)
    del os.environ["BP_TRACKING_TEST"]
    assert "table.txt" in listed
    assert "BP_TRACKING_TEST" in reads.env
    assert reads.paths[str(data)] is not None and reads.paths[str(data)] != DIRECTORY
    assert reads.paths[str(folder)] == DIRECTORY  # only probed: that it is a folder
    assert reads.paths[str(tmp_path / "absent")] is None
    assert reads.paths[str(tmp_path)] not in (None, DIRECTORY)  # listed: its full state
    assert reads.volatile == set()


def test_iterating_the_environment_records_all_of_it() -> None:
    reads = HookReads()
    with tracking(reads):
        names = sorted(os.environ)
    assert names and "*" in reads.env


def test_processes_and_sockets_make_the_run_volatile(tmp_path: Path) -> None:
    reads = HookReads()
    with tracking(reads):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        with socket.socket() as sock:
            sock.settimeout(1)
            with contextlib.suppress(OSError):  # refused or not: it was attempted
                sock.connect(("127.0.0.1", 9))
    assert "subprocess.Popen" in reads.volatile
    assert "socket.connect" in reads.volatile


def test_other_threads_are_not_tracked(tmp_path: Path) -> None:
    data = tmp_path / "elsewhere.txt"
    data.write_text("x")
    reads = HookReads()
    started, done = threading.Event(), threading.Event()

    def other() -> None:
        started.wait()
        data.read_text()
        os.environ.get("BP_OTHER_THREAD")
        done.set()

    worker = threading.Thread(target=other)
    worker.start()
    with tracking(reads):
        started.set()
        done.wait(10)
    worker.join()
    assert str(data) not in reads.paths
    assert "BP_OTHER_THREAD" not in reads.env


def test_host_probes_are_recorded_with_what_they_returned() -> None:
    import multiprocessing
    import platform

    platform.uname()  # platform's cache is filled: platform.node() no longer calls os.uname
    reads = HookReads()
    with tracking(reads):
        node = os.uname().nodename
        assert platform.node() == node
        assert platform.machine() == os.uname().machine
        assert socket.gethostname() == node
        cpus = os.cpu_count()
        assert multiprocessing.cpu_count() == cpus
        os.sched_getaffinity(0)
        os.sysconf("SC_NPROCESSORS_ONLN")
        with contextlib.suppress(ValueError):
            os.sysconf("SC_NO_SUCH_NAME")  # what it raised is what it gave
    assert list(reads.probes) == [
        "os.uname()",
        "platform.uname()",
        "socket.gethostname()",
        "os.cpu_count()",
        "os.sched_getaffinity(0)",
        'os.sysconf("SC_NPROCESSORS_ONLN")',
        'os.sysconf("SC_NO_SUCH_NAME")',
    ]
    assert reads.volatile == set()  # machine facts are checked by asking again
    for key, digest in reads.probes.items():
        assert probe_digest(key) == digest, key


def test_a_probe_asked_again_sees_a_change() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs a process allowed on two CPUs")
    reads = HookReads()
    with tracking(reads):
        os.sched_getaffinity(os.getpid())  # this process, by its pid: the same probe
    (key,) = reads.probes
    assert key == "os.sched_getaffinity(0)"
    os.sched_setaffinity(0, cpus[:1])
    try:
        assert probe_digest(key) != reads.probes[key]
    finally:
        os.sched_setaffinity(0, cpus)
    assert probe_digest(key) == reads.probes[key]
    assert probe_digest("os.no_such_probe()") != probe_digest("os.cpu_count()")


def test_what_cannot_be_asked_again_is_volatile_and_wrappers_go_away() -> None:
    originals = (os.uname, os.cpu_count, os.stat)
    reads = HookReads()
    with tracking(reads):
        assert os.uname is not originals[0]
        os.sched_getaffinity(1)  # another process's: its affinity is not this machine's
    assert reads.probes == {}
    assert reads.volatile == {"os.sched_getaffinity in a way that cannot be checked again"}
    assert (os.uname, os.cpu_count, os.stat) == originals


def test_nested_tracking_passes_probes_out_and_other_threads_are_not_tracked() -> None:
    outer, inner = HookReads(), HookReads()
    seen: list[int | None] = []
    with tracking(outer):
        worker = threading.Thread(target=lambda: seen.append(os.cpu_count()))
        worker.start()
        worker.join()
        with tracking(inner):
            os.uname()
    assert seen == [os.cpu_count()]
    assert list(inner.probes) == list(outer.probes) == ["os.uname()"]


def test_kernel_files_are_kept_by_what_they_say(tmp_path: Path) -> None:
    hostname = "/proc/sys/kernel/hostname"
    reads = HookReads()
    with tracking(reads):
        assert os.path.exists(hostname)  # only probed first: its stat
        with open(hostname) as name:
            assert name.read().strip() == os.uname().nodename
        assert os.listdir("/proc/sys/kernel")
    kept = reads.paths[hostname]
    assert is_content(kept) and state_now(hostname, kept) == kept
    assert kept == content_state(hostname) != content_state("/proc/sys/kernel/ostype")
    assert is_content(reads.paths["/proc/sys/kernel"])
    assert content_state(str(tmp_path / "absent")) is None
