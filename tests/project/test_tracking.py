"""Tracking what plugin code looked at: variables, files opened, probes, volatile acts."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from buildprint.project.tracking import DIRECTORY, HookReads, tracking


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
