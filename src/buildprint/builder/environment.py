"""Isolated build environments: a fresh uv virtualenv holding exactly the given wheel files."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

from packaging.utils import InvalidWheelFilename, NormalizedName, parse_wheel_filename
from uv import find_uv_bin

from buildprint.errors import BuildFailed, InputError

__all__ = [
    "GUARD_CODE",
    "BuildEnvironment",
    "InstalledWheel",
    "LinkMode",
    "kill_guarded",
    "run_guarded",
]

#: How uv places files from its cache into the environment.
LinkMode = Literal["copy", "hardlink", "clone", "symlink"]

# Variables that would make uv look at, or install into, something other than what we name.
_UV_UNWANTED_ENV = (
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "UV_PYTHON",
    "UV_SYSTEM_PYTHON",
    "UV_PROJECT_ENVIRONMENT",
    "PYTHONHOME",
    "PYTHONPATH",
)


# -- processes that die with buildprint ------------------------------------------------------

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


# -- environments --------------------------------------------------------------------------


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
    ) -> None:
        self.path = Path(path).absolute()
        self.interpreter = str(interpreter) if interpreter is not None else sys.executable
        # Copy by default: a backend that writes into its own package must not corrupt uv's
        # cache through a hard link. Copying a few backend wheels costs milliseconds.
        self.link_mode: LinkMode = link_mode
        self._installed: list[InstalledWheel] = []
        self._created = False

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
        """Delete the environment from disk (no error if it is already gone)."""
        shutil.rmtree(self.path, ignore_errors=True)
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
    def python(self) -> Path:
        """The environment's interpreter."""
        return self.bin_dir / ("python.exe" if sys.platform == "win32" else "python")

    @property
    def installed(self) -> tuple[InstalledWheel, ...]:
        """Every wheel installed so far, in installation order."""
        return tuple(self._installed)

    def install(self, wheels: Sequence[Path]) -> None:
        """Install exactly these wheel files, without dependencies, index or network.

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
        env = {k: v for k, v in os.environ.items() if k not in _UV_UNWANTED_ENV}
        env["UV_NO_PROGRESS"] = "1"
        env["UV_PYTHON_DOWNLOADS"] = "never"
        # Guarded: a killed buildprint must not leave uv installing into a folder it drops.
        proc = run_guarded([find_uv_bin(), *args], env=env)
        if proc.returncode != 0:
            output = proc.stdout.decode("utf-8", "replace").strip()
            if "No interpreter found" in output or "Failed to inspect Python" in output:
                raise InputError(f"interpreter unusable: {output}", file=self.interpreter)
            raise BuildFailed(f"{what} failed (uv exit {proc.returncode}):\n{output}")
