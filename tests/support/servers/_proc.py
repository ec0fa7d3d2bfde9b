"""Shared plumbing for test servers: free ports, readiness waits, process ownership."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = [
    "ServerError",
    "free_port",
    "port_open",
    "require_binary",
    "run_checked",
    "stop_process",
    "wait_until",
]


class ServerError(RuntimeError):
    """A test server could not be started; the message says what is missing or what failed."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def require_binary(name: str, hint: str) -> str:
    """Path of executable ``name``; a missing one fails loudly with an install hint."""
    found = shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin", "/sbin") if (p := Path(d, name)).is_file()),
        None,
    )
    if found is None:
        raise ServerError(f"{name} is not installed; install it with: {hint}")
    return found


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    proc: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Poll ``ready`` until true; fail with the log tail if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerError(f"{what} exited with {proc.returncode}{_tail(log)}")
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.1)
    raise ServerError(f"{what} was not ready after {timeout:.0f}s{_tail(log)}")


def port_open(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def stop_process(proc: subprocess.Popen[bytes], *, grace: float = 5.0) -> None:
    """Terminate a process we started (by its own pid), killing it if it lingers."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=grace)


def run_checked(argv: Sequence[str], *, what: str, env: dict[str, str] | None = None) -> str:
    """Run a setup command; a failure raises ServerError with its output."""
    result = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise ServerError(
            f"{what} failed ({result.returncode}): {' '.join(argv)}\n"
            + (result.stdout + result.stderr)[-3000:]
        )
    return result.stdout


def _tail(log: Path | None, lines: int = 30) -> str:
    if log is None or not log.exists():
        return ""
    text = log.read_text(errors="replace").splitlines()[-lines:]
    return "\n--- " + str(log) + " ---\n" + "\n".join(text)
