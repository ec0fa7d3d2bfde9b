"""A real Dask cluster on 127.0.0.1: ``dask scheduler`` and ``dask worker`` processes.

Each worker has its own working folder, ``HOME`` and buildprint worker store (no shared file
system with the coordinator but the remote), one thread and no nanny, so a SIGKILL ends it
for good and Dask moves its task to another worker.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers._proc import free_port, port_open, stop_process, wait_until

__all__ = ["DaskCluster", "DaskWorker", "signing_key", "worker_builds"]


def signing_key(seed: bytes) -> tuple[str, str]:
    """A deterministic Ed25519 signing key for workers: (private, for
    ``BUILDPRINT_SIGNING_KEY``; public id, for ``trusted-keys``)."""
    import hashlib

    from buildprint.store.signing import SigningKey

    raw = hashlib.sha256(seed).digest()
    return base64.b64encode(raw).decode(), SigningKey.from_raw(raw).public_id


@dataclass
class DaskWorker:
    name: str
    root: Path
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def store(self) -> Path:
        """The worker's buildprint store (``BUILDPRINT_WORKER_STORE``/store)."""
        return self.root / "buildprint" / "store"

    def kill(self) -> None:
        """SIGKILL the worker process: no goodbye to the scheduler."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


@dataclass
class DaskCluster:
    """A scheduler on a free port and the workers added to it."""

    root: Path
    port: int = 0
    workers: dict[str, DaskWorker] = field(default_factory=dict)
    _scheduler: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"dask://127.0.0.1:{self.port}"

    def start(self) -> DaskCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log = self.root / "scheduler.log"
        self._scheduler = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "distributed.cli.dask_scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-dashboard",
                "--no-show",
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            cwd=self.root,
            env=_base_env(self.root / "scheduler-home"),
        )
        wait_until(
            lambda: port_open(self.port),
            timeout=60,
            what="dask scheduler",
            proc=self._scheduler,
            log=log,
        )
        return self

    def add_worker(
        self,
        name: str,
        *,
        env: Mapping[str, str] | None = None,
        resources: str | None = None,
        preload: Path | None = None,
        wait: bool = True,
    ) -> DaskWorker:
        """Start worker ``name`` (its own folder, ``HOME`` and store); wait until the scheduler
        lists it."""
        root = self.root / name
        (root / "home").mkdir(parents=True, exist_ok=True)
        log = root / "worker.log"
        argv = [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            f"tcp://127.0.0.1:{self.port}",
            "--name",
            name,
            "--nthreads",
            "1",
            "--nworkers",
            "1",
            "--no-nanny",
            "--no-dashboard",
            "--local-directory",
            str(root / "dask"),
        ]
        if resources:
            argv += ["--resources", resources]
        if preload is not None:
            argv += ["--preload", str(preload)]
        worker_env = _base_env(root / "home")
        worker_env["BUILDPRINT_WORKER_STORE"] = str(root / "buildprint")
        worker_env.update(env or {})
        proc = subprocess.Popen(
            argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=root, env=worker_env
        )
        worker = DaskWorker(name, root, proc, log)
        self.workers[name] = worker
        if wait:
            wait_until(
                lambda: name in self.worker_names(),
                timeout=60,
                what=f"dask worker {name}",
                proc=proc,
                log=log,
            )
        return worker

    def worker_names(self) -> list[str]:
        """The names of the workers the scheduler knows now."""
        return sorted(self.info()["workers"])

    def info(self) -> dict[str, Any]:
        """``Client.scheduler_info()``, workers by name."""
        code = (
            "import json, sys\n"
            "from distributed import Client\n"
            f"with Client('tcp://127.0.0.1:{self.port}', timeout=20) as c:\n"
            "    info = c.scheduler_info(n_workers=-1)\n"
            "    workers = {w['name']: w for w in info['workers'].values()}\n"
            "    print(json.dumps({'workers': workers}, default=str))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        found: dict[str, Any] = json.loads(done.stdout)
        return found

    def stop_worker(self, name: str) -> None:
        stop_process(self.workers.pop(name).proc)

    def stop(self) -> None:
        for worker in list(self.workers.values()):
            stop_process(worker.proc)
        self.workers.clear()
        if self._scheduler is not None:
            stop_process(self._scheduler)


def _base_env(home: Path) -> dict[str, str]:
    """The test process's environment with a ``HOME`` of its own, minus what would make a
    worker sign differently or with another key than the test says."""
    home.mkdir(parents=True, exist_ok=True)
    scrubbed = {"BUILDPRINT_HOST_SIGNATURE", "BUILDPRINT_SIGNING_KEY", "BUILDPRINT_WORKER_STORE"}
    env = {k: v for k, v in os.environ.items() if k not in scrubbed}
    env["HOME"] = str(home)
    env["DASK_DISTRIBUTED__WORKER__DAEMON"] = "False"
    return env


def worker_builds(workers: Sequence[DaskWorker]) -> dict[str, list[str]]:
    """Package ``name-version`` -> the workers that ran its build (a build writes its log;
    a record fetched as a dependency writes none)."""
    found: dict[str, list[str]] = {}
    for worker in workers:
        for log in sorted((worker.store / "logs").glob("*.log")):
            found.setdefault(log.stem, []).append(worker.name)
    return found
