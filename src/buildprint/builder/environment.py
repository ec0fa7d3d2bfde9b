"""Isolated build environments: a fresh uv virtualenv holding exactly the given wheel files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from filelock import FileLock
from packaging.utils import InvalidWheelFilename, NormalizedName, parse_wheel_filename
from uv import find_uv_bin

from buildprint.builder.guard import run_guarded
from buildprint.errors import BuildFailed, InputError
from buildprint.fsio import remove_unlocked, shared_hold, write_atomic
from buildprint.signature.canonical import digest_value

__all__ = ["BuildEnvironment", "EnvironmentPool", "InstalledWheel", "LinkMode"]

#: How uv places files from its cache into the environment.
LinkMode = Literal["copy", "hardlink", "clone", "symlink"]

# The only caller variables uv is given: where it finds the interpreter and keeps its cache.
# Nothing else (no UV_*, e.g. UV_VENV_SEED, no VIRTUAL_ENV or PYTHONPATH) may steer what it
# creates or installs.
_UV_CALLER_ENV = ("PATH", "HOME", "TMPDIR", "XDG_CACHE_HOME", "UV_CACHE_DIR")


@dataclass(frozen=True)
class InstalledWheel:
    """A wheel file installed into a build environment, with the name and version it declares."""

    path: Path
    name: NormalizedName
    version: str


class BuildEnvironment:
    """A throw-away virtualenv for one build, created with uv from a chosen interpreter.

    Nothing is resolved or downloaded: :meth:`install` takes wheel files the caller already
    fetched and verified, and installs exactly those (``--no-deps --no-index --offline``).
    Use it as a context manager; the environment is deleted on exit.
    """

    def __init__(
        self,
        path: Path,
        *,
        interpreter: str | Path | None = None,
        link_mode: LinkMode = "copy",
        scratch: Path | None = None,
    ) -> None:
        self.path = Path(path).absolute()
        self.interpreter = str(interpreter) if interpreter is not None else sys.executable
        # Copy by default: a backend that writes into its own package must not corrupt uv's
        # cache through a hard link. Copying a few backend wheels costs milliseconds.
        self.link_mode: LinkMode = link_mode
        self.scratch = Path(scratch).absolute() if scratch is not None else None
        self._installed: list[InstalledWheel] = []
        self._created = False

    def borrow(self, scratch: Path) -> BuildEnvironment:
        """The same (created) environment for one build whose ``HOME`` and ``TMPDIR`` are in
        ``scratch``: what a shared environment lends each build that uses it."""
        view = BuildEnvironment(
            self.path, interpreter=self.interpreter, link_mode=self.link_mode, scratch=scratch
        )
        view._created = True
        view._installed = list(self._installed)
        return view

    # -- lifecycle -------------------------------------------------------------------------

    def create(self) -> BuildEnvironment:
        """Create the virtualenv (replacing an earlier one at the same path); return ``self``."""
        self._run_uv(
            [
                "venv",
                "--quiet",
                "--no-config",
                "--no-project",
                "--no-python-downloads",
                "--clear",
                "--python",
                self.interpreter,
                str(self.path),
            ],
            what=f"creating a build environment with {self.interpreter}",
        )
        self._created = True
        self._installed = []
        return self

    def remove(self) -> None:
        """Delete the environment (and its build's home and temp folders) from disk (no
        error if it is already gone)."""
        for folder in (self.path, self.home_dir, self.tmp_dir):
            shutil.rmtree(folder, ignore_errors=True)
        self._created = False
        self._installed = []

    def __enter__(self) -> BuildEnvironment:
        if not self._created:
            self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.remove()

    # -- what it holds ---------------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        """The folder holding the environment's ``python`` and console scripts."""
        return self.path / ("Scripts" if sys.platform == "win32" else "bin")

    @property
    def home_dir(self) -> Path:
        """The ``HOME`` a build in this environment gets (in its scratch folder, else beside
        the environment; emptied for each hook)."""
        if self.scratch is not None:
            return self.scratch / "home"
        return self.path.with_name(self.path.name + ".home")

    @property
    def tmp_dir(self) -> Path:
        """The ``TMPDIR`` a build in this environment gets (like :attr:`home_dir`)."""
        if self.scratch is not None:
            return self.scratch / "tmp"
        return self.path.with_name(self.path.name + ".tmp")

    @property
    def python(self) -> Path:
        """The environment's interpreter."""
        return self.bin_dir / ("python.exe" if sys.platform == "win32" else "python")

    @property
    def installed(self) -> tuple[InstalledWheel, ...]:
        """Every wheel installed so far, in installation order."""
        return tuple(self._installed)

    def install(self, wheels: Sequence[Path], *, compile_bytecode: bool = False) -> None:
        """Install exactly these wheel files, without dependencies, index or network;
        ``compile_bytecode`` as pip does by default (worth it for an environment many builds
        use: each backend call then imports compiled modules, builds still write none).

        Raises :class:`InputError` naming the file when a path is missing or is not a wheel.
        """
        if not self._created:
            raise RuntimeError("install() called before create()")
        parsed: list[InstalledWheel] = []
        for wheel in wheels:
            path = Path(wheel).absolute()
            if not path.is_file():
                raise InputError("wheel file does not exist", file=path)
            try:
                name, version, _build, _tags = parse_wheel_filename(path.name)
            except InvalidWheelFilename as exc:
                raise InputError(f"not a wheel file name: {exc}", file=path) from None
            parsed.append(InstalledWheel(path, name, str(version)))
        if not parsed:
            return
        self._run_uv(
            [
                "pip",
                "install",
                "--quiet",
                "--no-config",
                "--no-deps",
                "--no-index",
                "--offline",
                "--link-mode",
                self.link_mode,
                *(["--compile-bytecode"] if compile_bytecode else []),
                "--python",
                str(self.python),
                *(str(w.path) for w in parsed),
            ],
            what="installing build requirements "
            + ", ".join(f"{w.name}=={w.version}" for w in parsed),
        )
        self._installed.extend(parsed)

    # -- helpers ---------------------------------------------------------------------------

    def _run_uv(self, args: list[str], *, what: str) -> None:
        env = {k: os.environ[k] for k in _UV_CALLER_ENV if k in os.environ}
        env["UV_NO_PROGRESS"] = "1"
        env["UV_PYTHON_DOWNLOADS"] = "never"
        # Guarded: a killed buildprint must not leave uv installing into a folder it drops.
        proc = run_guarded([find_uv_bin(), *args], env=env)
        if proc.returncode != 0:
            output = proc.stdout.decode("utf-8", "replace").strip()
            if "No interpreter found" in output or "Failed to inspect Python" in output:
                raise InputError(f"interpreter unusable: {output}", file=self.interpreter)
            raise BuildFailed(f"{what} failed (uv exit {proc.returncode}):\n{output}")


class EnvironmentPool:
    """Build environments shared by every build that installs the same wheels.

    An environment is keyed by the interpreter and the exact wheel files (name and sha256)
    it holds, created once (under a lock between processes, marked complete only once every
    wheel is in) and never changed afterwards: each build borrows it
    (:meth:`BuildEnvironment.borrow`) with a ``HOME`` and ``TMPDIR`` of its own. A half-made
    one (a killed run) has no mark and is made again.
    """

    MARK = ".buildprint-environment.json"

    def __init__(self, root: Path, interpreter: str, *, link_mode: LinkMode = "copy") -> None:
        self.root = root
        self.interpreter = interpreter
        self.link_mode: LinkMode = link_mode
        #: Shared holds on the lock files of the environments handed out, by key.
        self._holds: dict[str, int | None] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        self._holds_lock = threading.Lock()

    def key(self, wanted: Sequence[tuple[str, str]]) -> str:
        """The key of an environment holding ``wanted`` (wheel file name, sha256) pairs."""
        return digest_value(
            {
                "interpreter": os.path.realpath(shutil.which(self.interpreter) or self.interpreter),
                "wheels": sorted(map(list, wanted)),
            }
        )[:32]

    def get(
        self, wanted: Sequence[tuple[str, str]], files: Callable[[], Sequence[Path]]
    ) -> BuildEnvironment:
        """The environment holding the wheels ``wanted`` names; ``files`` gives their paths
        (called only when the environment has to be made).

        This process then holds a shared lock on ``<key>.lock`` for as long as the pool
        lives (released when it is closed, or the process ends), and the mark's mtime says
        when the environment was last handed out: ``remove_unused`` (``gc``) removes neither
        one a live process holds nor one used recently."""
        key = self.key(wanted)
        path = self.root / key
        lock = Path(str(path) + ".lock")
        env = BuildEnvironment(path, interpreter=self.interpreter, link_mode=self.link_mode)
        mark = path / self.MARK
        self.root.mkdir(parents=True, exist_ok=True)
        with self._holds_lock:
            this_key = self._key_locks.setdefault(key, threading.Lock())
        with this_key:  # threads wanting other environments go on meanwhile
            while True:
                if key not in self._holds:
                    self._holds[key] = shared_hold(lock)
                if mark.is_file():
                    break
                # To be made: let go of the shared hold (the exclusive lock below would wait
                # for it), make it under the exclusive lock, and take the hold again.
                self._release(key)
                with FileLock(str(lock)):
                    if not mark.is_file():  # another process may have made it meanwhile
                        env.create()
                        env.install(files(), compile_bytecode=True)
                        write_atomic(mark, json.dumps(sorted(map(list, wanted))).encode())
        with contextlib.suppress(OSError):
            os.utime(mark)  # last used: now
        env._created = True
        return env

    def _release(self, key: str) -> None:
        fd = self._holds.pop(key, None)
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        """Let go of the environments this pool handed out (``gc`` may remove them once
        they are unused long enough)."""
        with self._holds_lock:
            keys = list(self._key_locks.items())
        for key, lock in keys:
            with lock:
                self._release(key)

    @classmethod
    def remove_unused(
        cls, root: Path, *, unused_seconds: float, grace_seconds: float
    ) -> list[Path]:
        """Remove the environments under ``root`` no live process holds that were last used
        more than ``unused_seconds`` ago, the half-made ones (no mark: a killed run) older
        than ``grace_seconds``, the ``.home``/``.tmp`` folders of environments gone, and lock
        files of environments gone; what was removed. Each is removed while holding its lock
        exclusively, so nothing can be making or using it meanwhile; an environment removed
        is made again by the next build that needs it."""
        removed: list[Path] = []
        now = time.time()
        try:
            entries = sorted(root.iterdir())
        except FileNotFoundError:
            return removed
        for entry in entries:
            if entry.suffix == ".lock" or not entry.is_dir():
                continue
            if entry.suffix in {".home", ".tmp"}:
                if not entry.with_suffix("").exists() and _age(entry, now) > grace_seconds:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
                continue
            lock = Path(str(entry) + ".lock")
            fd = _try_exclusive(lock)
            if fd is None:
                continue  # held: being made, or used by a live process
            try:
                mark = entry / cls.MARK
                if mark.is_file():
                    gone = _age(mark, now) > unused_seconds
                else:
                    gone = _age(entry, now) > grace_seconds
                if gone:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry)
            finally:
                os.close(fd)
        for lock in sorted(root.glob("*.lock")):
            if not Path(str(lock)[: -len(".lock")]).exists() and remove_unlocked(
                lock, older_than=grace_seconds
            ):
                removed.append(lock)
        return removed


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0


def _try_exclusive(lock: Path) -> int | None:
    """An exclusive ``flock`` on ``lock`` (created if absent) if nobody holds it, else None."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - no flock: never take one as unheld
        return None
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd
