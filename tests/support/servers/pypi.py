"""pypiserver on 127.0.0.1 with upload auth, for publish tests."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ._proc import ServerError, free_port, port_open, stop_process, wait_until

__all__ = ["PypiServer", "start_pypiserver"]


@dataclass
class PypiServer:
    """A running pypiserver: ``url`` is its root (``/simple/`` below), ``packages`` its folder."""

    url: str
    packages: Path
    user: str
    password: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        """Stop pypiserver (by the pid we started)."""
        stop_process(self.proc)


def start_pypiserver(root: Path, *, user: str, password: str) -> PypiServer:
    """Start pypiserver serving ``root/packages``; uploads need ``user``/``password``."""
    try:
        from passlib.apache import HtpasswdFile  # type: ignore[import-untyped]
    except ImportError:
        raise ServerError("passlib is not installed; pip install -e '.[test]'") from None
    try:
        import pypiserver  # type: ignore[import-untyped]  # noqa: F401
    except ImportError:
        raise ServerError("pypiserver is not installed; pip install -e '.[test]'") from None
    packages = root / "packages"
    packages.mkdir(parents=True, exist_ok=True)
    htpasswd = HtpasswdFile(str(root / "htpasswd"), new=True)
    htpasswd.set_password(user, password)
    htpasswd.save()
    port = free_port()
    log = root / "pypiserver.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pypiserver",
                "run",
                "-p",
                str(port),
                "-i",
                "127.0.0.1",
                "-a",
                "update",
                "-P",
                str(root / "htpasswd"),
                str(packages),
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_until(lambda: port_open(port), timeout=30, what="pypiserver", proc=proc, log=log)
    except BaseException:
        stop_process(proc)
        raise
    return PypiServer(f"http://127.0.0.1:{port}", packages, user, password, proc)
