"""Commands that die with buildprint: a guard process ties each build command's whole
process group to buildprint's life, SIGKILL included."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["GUARD_CODE", "kill_guarded", "run_guarded"]

#: The guard between buildprint and a build command (run as ``python -I -S -c GUARD_CODE cmd...``).
#:
#: Why a guard process and not ``prctl(PR_SET_PDEATHSIG)``: the death signal fires when the
#: *thread* that forked the child exits (builds run on a thread pool), it needs a
#: ``preexec_fn`` (unsafe in a threaded parent), it is Linux-only, and it reaches only the
#: direct child, while the work is done by the backend's children (gcc, ninja, nvcc).
#:
#: How it works: buildprint starts the guard in a new session, so the guard leads a process
#: group that the command and everything it spawns inherit. The guard's stdin is the read end
#: of a pipe whose only write end stays in buildprint; the kernel closes it when buildprint
#: exits for any reason, SIGKILL included, and the guard's read then returns end-of-file: it
#: kills its whole group, itself included. Started before or after buildprint dies, the guard
#: sees the same end-of-file, so there is no window in which a command outlives buildprint.
#: Otherwise the guard waits for the command and exits as it did. Only processes that leave
#: the group on purpose (``setsid`` daemons) escape, as they would escape any group kill.
GUARD_CODE = """\
import os, signal, subprocess, sys, threading
def watch():
    while os.read(0, 4096):
        pass
    os.killpg(0, signal.SIGKILL)
threading.Thread(target=watch, daemon=True).start()
try:
    child = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL)
except OSError as exc:
    sys.stderr.write("buildprint: cannot run %s: %s\\n" % (sys.argv[1], exc))
    sys.exit(127)
code = child.wait()
if code < 0:
    try:
        signal.signal(-code, signal.SIG_DFL)
    except (OSError, ValueError):
        pass
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


# Guards running now, so an interrupted caller can end them all (see kill_guarded).
_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


def run_guarded(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | Path | None = None,
    stdout: int | IO[Any] = subprocess.PIPE,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``args`` so that it, and every process it starts, dies with buildprint.

    ``stdout`` (with stderr merged in) is a file, :data:`subprocess.PIPE` (returned as bytes in
    ``.stdout``) or :data:`subprocess.DEVNULL`; stdin is empty. When ``timeout`` seconds pass,
    or the calling thread is interrupted, the whole process group is killed and the exception
    (:class:`subprocess.TimeoutExpired`, ...) re-raised. See :data:`GUARD_CODE` for how the
    command is tied to buildprint's life, even when buildprint is killed with SIGKILL.
    """
    watch_read, watch_write = os.pipe()  # both ends are not inherited by other children
    try:
        with subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", GUARD_CODE, *args],
            cwd=cwd,
            env=dict(env),
            stdin=watch_read,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        ) as process:
            os.close(watch_read)
            watch_read = -1
            with _running_lock:
                _running.add(process)
            try:
                output, _ = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(process)
                raise subprocess.TimeoutExpired(list(args), timeout or 0.0) from None
            except BaseException:
                _kill_group(process)
                raise
            finally:
                with _running_lock:
                    _running.discard(process)
            if process.returncode < 0:
                # The guard itself was killed (OOM killer, an operator): end what it guarded.
                _kill_group(process)
    finally:
        if watch_read >= 0:
            os.close(watch_read)
        os.close(watch_write)
    return subprocess.CompletedProcess(list(args), process.returncode, output)


def kill_guarded() -> int:
    """Kill every command :func:`run_guarded` is running now, with all their processes.

    For an interrupted caller: Ctrl-C reaches only the main thread, and the commands run in
    sessions of their own, so builds on worker threads would otherwise run to the end. Each
    interrupted :func:`run_guarded` returns as if its command was SIGKILLed (exit -9).
    Returns how many were killed; commands started afterwards run normally.
    """
    with _running_lock:
        running = list(_running)
    for process in running:
        if process.returncode is None:  # not reaped yet, so its group id is still its own
            _killpg(process)
    return len(running)


def _killpg(process: subprocess.Popen[bytes]) -> None:
    # The guard leads the group, so its pid names it; the group outlives a dead leader as
    # long as one member is left, and its id is not reused meanwhile.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    _killpg(process)
    process.wait()
