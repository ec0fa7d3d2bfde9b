"""PEP 517 runner: read ``[build-system]`` and call the backend in a clean, logged subprocess.

Reproducibility: the backend runs in a constructed environment (:func:`build_env`: its own
empty ``HOME`` and ``TMPDIR``, a fixed locale, ``SOURCE_DATE_EPOCH``, ``PYTHONHASHSEED=0``, a
``PATH`` of identified tools, and the package's declared variables; nothing inherited), so
the same source built twice gives the same wheel where the backend allows. Paths also leak
into builds (C extensions record the compile directory in debug info), so callers must build
in a directory that does not vary between runs, e.g. ``<work>/<name>-<version>/`` re-created
for each build, never a random temporary folder (or remap it: :func:`remap_source_flags`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import tomllib
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from packaging.requirements import InvalidRequirement, Requirement
from pyproject_hooks import (
    BackendUnavailable,
    BuildBackendHookCaller,
    BuildBackendWarning,
    HookMissing,
    UnsupportedOperation,
)

from buildprint.builder.environment import BuildEnvironment
from buildprint.builder.guard import run_guarded
from buildprint.builder.trace import Tracer
from buildprint.errors import BuildFailed, InputError
from buildprint.inputs.toolchain import toolset
from buildprint.project.toml import line_of

__all__ = [
    "CONSTRUCTED",
    "DEFAULT_SOURCE_DATE_EPOCH",
    "FIXED_LOCALE",
    "LEGACY_BACKEND",
    "LEGACY_REQUIRES",
    "BackendFailed",
    "BuildSystem",
    "ConfigSettings",
    "build_env",
    "build_wheel",
    "default_log_path",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_wheel",
    "read_build_system",
    "remap_source_flags",
    "warnings_to_log",
]

#: 1980-01-01T00:00:00Z, the earliest time a zip file can record.
DEFAULT_SOURCE_DATE_EPOCH = 315532800

#: PEP 517's fallback for projects without ``build-backend``.
LEGACY_BACKEND = "setuptools.build_meta:__legacy__"
#: PEP 518's fallback for projects without ``[build-system]``.
LEGACY_REQUIRES = ("setuptools>=40.8.0",)

#: The variables buildprint sets for every build (see :func:`build_env`); a build receives
#: these and its declared ones (settings ``env`` and pass-through), nothing else.
CONSTRUCTED = (
    "HOME",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "PATH",
    "VIRTUAL_ENV",
    "SOURCE_DATE_EPOCH",
    "PYTHONHASHSEED",
    "PYTHONNOUSERSITE",
    "PYTHONDONTWRITEBYTECODE",
    "PIP_NO_INPUT",
)

#: The locale every build runs in (glibc has it built in since 2.35; Debian long before).
FIXED_LOCALE = "C.UTF-8"

#: How many log lines a :class:`BackendFailed` carries.
LOG_TAIL_LINES = 30

ConfigSettings = Mapping[str, str | Sequence[str]]

_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")
_BACKEND_NAME = re.compile(r"^[A-Za-z_][\w.]*(:[A-Za-z_][\w.]*)?$")


@dataclass(frozen=True)
class BuildSystem:
    """The ``[build-system]`` table of a source tree, with PEP 517/518 defaults filled in."""

    requires: list[str]
    backend: str
    backend_path: list[str] | None


class BackendFailed(BuildFailed):
    """A backend hook failed; ``log_path`` holds its full output, ``log_tail`` the last lines."""

    def __init__(self, message: str, *, hook: str, log_path: Path, log_tail: str) -> None:
        super().__init__(message, file=log_path)
        self.hook = hook
        self.log_path = log_path
        self.log_tail = log_tail


# -- reading [build-system] ----------------------------------------------------------------


def read_build_system(source_dir: Path) -> BuildSystem:
    """Read ``<source_dir>/pyproject.toml``'s ``[build-system]``, with the PEP 517 defaults.

    No file or no table means the legacy setuptools backend. A malformed file or table is an
    :class:`InputError` naming the file and line.
    """
    pyproject = Path(source_dir) / "pyproject.toml"
    legacy = BuildSystem(list(LEGACY_REQUIRES), LEGACY_BACKEND, None)
    if not pyproject.is_file():
        return legacy
    try:
        text = pyproject.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc}", file=pyproject) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = _TOML_POSITION.search(str(exc))
        message = _TOML_POSITION.sub("", str(exc)).replace("(at end of document)", "").strip()
        line = int(where.group(1)) if where else None
        if line is None and "end of document" in str(exc):
            line = text.count("\n") + 1
        raise InputError(f"malformed TOML: {message}", file=pyproject, line=line) from None
    table = data.get("build-system")
    if table is None:
        return legacy
    if not isinstance(table, dict):
        raise InputError(
            "[build-system] must be a table",
            file=pyproject,
            line=line_of(text, ["build-system"]),
        )

    def bad(key: str, message: str) -> InputError:
        line = line_of(text, ["build-system", key])
        return InputError(f"[build-system] {message}", file=pyproject, line=line)

    if "requires" not in table:
        raise bad("requires", "has no 'requires' key (PEP 518 makes it mandatory)")
    requires = table["requires"]
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise bad("requires", "'requires' must be a list of strings")
    for requirement in requires:
        try:
            Requirement(requirement)
        except InvalidRequirement as exc:
            raise bad("requires", f"invalid requirement {requirement!r}: {exc}") from None

    backend = table.get("build-backend")
    if backend is None:
        # PEP 517: a [build-system] without a backend still means legacy setuptools.
        return BuildSystem(list(requires), LEGACY_BACKEND, None)
    if not isinstance(backend, str) or not _BACKEND_NAME.match(backend):
        raise bad("build-backend", f"'build-backend' must be 'module:object', got {backend!r}")

    backend_path = table.get("backend-path")
    if backend_path is not None:
        if not isinstance(backend_path, list) or not all(isinstance(p, str) for p in backend_path):
            raise bad("backend-path", "'backend-path' must be a list of strings")
        root = Path(source_dir).resolve()
        for entry in backend_path:
            # PEP 517: backend-path entries are relative and stay inside the source tree.
            target = (root / entry).resolve()
            if Path(entry).is_absolute() or not target.is_relative_to(root):
                raise bad("backend-path", f"'backend-path' entry {entry!r} leaves the source tree")
    return BuildSystem(list(requires), backend, backend_path)


# -- running hooks -------------------------------------------------------------------------


def build_env(
    env: BuildEnvironment,
    extra_env: Mapping[str, str] | None = None,
    *,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
) -> dict[str, str]:
    """The exact environment a backend sees: constructed, nothing taken from the caller.

    :data:`CONSTRUCTED` lists what buildprint sets: an empty ``HOME`` and ``TMPDIR`` of the
    build's own (made afresh here, see :attr:`BuildEnvironment.home_dir`), the ``C.UTF-8``
    locale, ``SOURCE_DATE_EPOCH`` and a ``PATH`` of the build environment's ``bin`` then the
    folders of the tools :func:`~buildprint.inputs.toolchain.toolset` finds (the ones the
    ``toolchain`` component identifies). ``extra_env`` (the package's declared variables:
    its settings' ``env`` and pass-through) is laid over them; a declared ``PATH`` is the
    search path itself, after the build environment's ``bin``.
    """
    declared = dict(extra_env or {})
    tools = toolset(env.interpreter, declared)
    for folder in (env.home_dir, env.tmp_dir):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    result = {
        "HOME": str(env.home_dir),
        "TMPDIR": str(env.tmp_dir),
        "LANG": FIXED_LOCALE,
        "LC_ALL": FIXED_LOCALE,
        "VIRTUAL_ENV": str(env.path),
        "SOURCE_DATE_EPOCH": str(source_date_epoch),
        # Set iteration order and hash-based output stable across runs.
        "PYTHONHASHSEED": "0",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PIP_NO_INPUT": "1",
    }
    result.update(declared)
    result["PATH"] = os.pathsep.join(dict.fromkeys([str(env.bin_dir), *tools.path]))
    return result


def remap_source_flags(environ: Mapping[str, str], source_dir: Path) -> dict[str, str]:
    """``environ`` with compiler flags that rewrite ``source_dir`` to ``/buildprint/<name>``.

    Appends ``-ffile-prefix-map`` (gcc >= 8, clang >= 10) to ``CPPFLAGS`` and
    ``--remap-path-prefix`` to ``RUSTFLAGS``, after whatever the caller set, so debug info and
    ``__FILE__`` no longer name the build directory. ``CPPFLAGS`` because setuptools (like
    meson and CMake) *adds* it to every compile and link command, while a ``CFLAGS`` or
    ``CXXFLAGS`` in the environment *replaces* the interpreter's own flags (``-DNDEBUG -g
    -fwrapv -O3 -Wall``): setting those would build unlike ``pip wheel``. ``CFLAGS`` and
    ``CXXFLAGS`` are left to the package's settings, with the meaning they have under pip.
    Opt-in: some compilers (nvcc as a host compiler wrapper, old toolchains) reject these flags.
    """
    source_dir = Path(source_dir).absolute()
    stable = f"/buildprint/{source_dir.name}"
    result = dict(environ)
    for variable, flag in (
        ("CPPFLAGS", f"-ffile-prefix-map={source_dir}={stable}"),
        ("RUSTFLAGS", f"--remap-path-prefix={source_dir}={stable}"),
    ):
        current = result.get(variable, "").strip()
        result[variable] = f"{current} {flag}".strip()
    return result


def default_log_path(source_dir: Path) -> Path:
    """Where a build's log goes unless the caller says: ``<source_dir>.build.log``, beside it."""
    source_dir = Path(source_dir).absolute()
    return source_dir.with_name(source_dir.name + ".build.log")


def _tail(log_path: Path, count: int = LOG_TAIL_LINES) -> str:
    try:
        with log_path.open(encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=count)).rstrip("\n")
    except OSError:
        return ""


class _Runner:
    """A pyproject_hooks subprocess runner: clean environment, output appended to a log file."""

    def __init__(
        self,
        base_env: dict[str, str],
        log_path: Path,
        timeout: float | None,
        trace: tuple[Tracer, Path] | None = None,
    ) -> None:
        self.base_env = base_env
        self.log_path = log_path
        self.timeout = timeout
        self.trace = trace  # (tracer, folder): the hook runs traced, one file per process

    def __call__(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        env = dict(self.base_env)
        if extra_environ:
            env.update(extra_environ)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.trace is not None:
            tracing, folder = self.trace
            folder.mkdir(parents=True, exist_ok=True)
            cmd, env = tracing.command(cmd, folder), tracing.environ(env, folder)
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(cmd)}\n".encode())
            log.flush()
            # In a process group of its own, so a timeout also stops the compilers the backend
            # started, and guarded, so all of them die with buildprint even if it is SIGKILLed.
            done = run_guarded(cmd, env=env, cwd=cwd, stdout=log, timeout=self.timeout)
        if done.returncode != 0:
            raise subprocess.CalledProcessError(done.returncode, list(cmd))


def _call(
    hook: str,
    source_dir: Path,
    env: BuildEnvironment,
    config_settings: ConfigSettings | None,
    extra_env: Mapping[str, str] | None,
    *,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    log_path: Path | None = None,
    timeout: float | None = None,
    remap_source_path: bool = False,
    trace: tuple[Tracer, Path] | None = None,
    **kwargs: Any,
) -> Any:
    """Run PEP 517 ``hook`` with ``kwargs`` (``config_settings`` added) in ``env``."""
    kwargs["config_settings"] = _plain(config_settings)
    source_dir = Path(source_dir).absolute()
    if not source_dir.is_dir():
        raise InputError("source directory does not exist", file=source_dir)
    system = read_build_system(source_dir)
    log = Path(log_path).absolute() if log_path is not None else default_log_path(source_dir)
    environ = build_env(env, extra_env, source_date_epoch=source_date_epoch)
    if remap_source_path:
        environ = remap_source_flags(environ, source_dir)
    runner = _Runner(environ, log, timeout, trace)
    caller = BuildBackendHookCaller(
        str(source_dir),
        system.backend,
        backend_path=system.backend_path,
        runner=runner,
        python_executable=str(env.python),
    )

    def failed(reason: str) -> BackendFailed:
        tail = _tail(log)
        message = f"{hook} of backend {system.backend} {reason}; log: {log}"
        if tail:
            message += f"\nlast lines of the log:\n{tail}"
        return BackendFailed(message, hook=hook, log_path=log, log_tail=tail)

    try:
        with warnings_to_log(log):
            return getattr(caller, hook)(**kwargs)
    except subprocess.CalledProcessError as exc:
        raise failed(f"failed (exit {exc.returncode})") from None
    except subprocess.TimeoutExpired as exc:
        raise failed(f"timed out after {exc.timeout:g} s") from None
    except BackendUnavailable as exc:
        _append(log, exc.traceback)
        # The first line of str(exc) is the import error; the traceback went to the log.
        reason = str(exc).splitlines()[0] if str(exc) else "import failed"
        raise failed(f"could not be imported: {reason}") from None
    except (HookMissing, UnsupportedOperation) as exc:
        raise failed(f"is not supported: {exc}") from None


# -- warnings ------------------------------------------------------------------------------

#: The log each thread's warnings go to while it runs a hook (see :func:`warnings_to_log`).
_thread_log = threading.local()
_routing_lock = threading.Lock()
_routing: list[Callable[..., None]] = []  # the showwarning it replaced, once installed


def warnings_to_log(log: Path) -> contextlib.AbstractContextManager[None]:
    """While the calling thread is inside, the warnings it emits are written to ``log``.

    pyproject_hooks re-raises the backend's warnings (``BuildBackendWarning``) in the thread
    that called the hook: they belong in the package's log, never on the terminal between the
    progress lines. ``warnings.catch_warnings`` cannot do this: it swaps process-wide state,
    so with builds on several threads one build's exit would restore another's handler (or
    the terminal's) under it. Instead one ``warnings.showwarning`` is installed, once, that
    sends a warning to the log of the thread it is emitted in, and to the handler it replaced
    elsewhere; backend warnings are always shown (to the log), never turned into errors or
    hidden by the caller's filters.
    """
    _install_routing()
    return _logging_to(log)


@contextlib.contextmanager
def _logging_to(log: Path) -> Iterator[None]:
    outer = getattr(_thread_log, "path", None)
    _thread_log.path = log
    try:
        yield
    finally:
        _thread_log.path = outer


def _install_routing() -> None:
    always = ("always", None, BuildBackendWarning, None, 0)
    with _routing_lock:
        if warnings.showwarning is not _route:
            _routing[:] = [warnings.showwarning]
            warnings.showwarning = _route
        if warnings.filters[:1] != [always]:
            warnings.filterwarnings("always", category=BuildBackendWarning)


def _route(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    log: Path | None = getattr(_thread_log, "path", None)
    if log is None:
        previous = _routing[0] if _routing else warnings.showwarning
        if previous is not _route:
            previous(message, category, filename, lineno, file, line)
        return
    where = "the backend" if issubclass(category, BuildBackendWarning) else "buildprint"
    _append(log, f"warning from {where}: {category.__name__}: {message} ({filename}:{lineno})")


def _append(log: Path, text: str) -> None:
    with log.open("a", encoding="utf-8") as handle:
        handle.write(text if text.endswith("\n") else text + "\n")


def get_requires_for_build_wheel(
    source_dir: Path,
    env: BuildEnvironment,
    config_settings: ConfigSettings | None = None,
    extra_env: Mapping[str, str] | None = None,
    *,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    log_path: Path | None = None,
    timeout: float | None = None,
    remap_source_path: bool = False,
) -> list[str]:
    """The backend's extra wheel-build requirements (on top of ``[build-system] requires``).

    ``env`` must already hold the ``requires`` of :func:`read_build_system`. Output is appended
    to ``log_path`` (default :func:`default_log_path`), as for :func:`build_wheel`.
    """
    result = _call(
        "get_requires_for_build_wheel",
        source_dir,
        env,
        config_settings,
        extra_env,
        source_date_epoch=source_date_epoch,
        log_path=log_path,
        timeout=timeout,
        remap_source_path=remap_source_path,
    )
    return [str(item) for item in result]


def prepare_metadata_for_build_wheel(
    source_dir: Path,
    env: BuildEnvironment,
    metadata_directory: Path,
    config_settings: ConfigSettings | None = None,
    extra_env: Mapping[str, str] | None = None,
    *,
    log_path: Path | None = None,
    timeout: float | None = None,
) -> Path:
    """The ``.dist-info`` folder the backend prepares (falling back to building a wheel and
    extracting it, as pyproject-hooks does for backends without the hook)."""
    metadata_directory.mkdir(parents=True, exist_ok=True)
    name = _call(
        "prepare_metadata_for_build_wheel",
        source_dir,
        env,
        config_settings,
        extra_env,
        log_path=log_path,
        timeout=timeout,
        metadata_directory=str(metadata_directory),
        _allow_fallback=True,
    )
    return metadata_directory / str(name)


def build_wheel(
    source_dir: Path,
    env: BuildEnvironment,
    out_dir: Path,
    config_settings: ConfigSettings | None = None,
    extra_env: Mapping[str, str] | None = None,
    *,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    log_path: Path | None = None,
    timeout: float | None = None,
    remap_source_path: bool = False,
    trace: tuple[Tracer, Path] | None = None,
) -> Path:
    """Build a wheel of ``source_dir`` in ``env`` and return its path inside ``out_dir``.

    The backend writes into a private folder first and the wheel is then renamed into
    ``out_dir``, so a failed or killed build never leaves a partial wheel there. A failing
    backend raises :class:`BackendFailed` (a :class:`BuildFailed`) with the log's last lines;
    so does one running longer than ``timeout`` seconds (its whole process group is killed).
    The backend's output is appended to ``log_path`` (default :func:`default_log_path`): give
    each build its own log, or remove the old one, to keep logs apart.

    Compiled code records the directory it was built in. Build at a path that does not vary
    between runs, or pass ``remap_source_path=True`` (see :func:`remap_source_flags`) to make
    the wheel independent of where ``source_dir`` is.

    ``trace=(tracer, folder)`` runs the backend traced (see :mod:`buildprint.builder.trace`),
    its trace files in ``folder``.
    """
    out_dir = Path(out_dir).absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=out_dir))
    try:
        name = _call(
            "build_wheel",
            source_dir,
            env,
            config_settings,
            extra_env,
            source_date_epoch=source_date_epoch,
            log_path=log_path,
            timeout=timeout,
            remap_source_path=remap_source_path,
            trace=trace,
            wheel_directory=str(staging),
        )
        built = staging / str(name)
        if not built.is_file() or not built.name.endswith(".whl"):
            raise BuildFailed(f"backend reported {name!r} but wrote no such wheel", file=source_dir)
        target = out_dir / built.name
        os.replace(built, target)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _plain(config_settings: ConfigSettings | None) -> dict[str, str | list[str]] | None:
    """JSON-ready copy: the hook input is serialised to the backend process."""
    if config_settings is None:
        return None
    return {
        key: value if isinstance(value, str) else list(value)
        for key, value in config_settings.items()
    }
