"""What a build read: the backend's processes traced, the trace read back into paths.

Two tracers, the first that works here is used (docs/discovered.md):

- ``preload``: ``preload.c``, compiled once with the machine's C compiler into buildprint's
  cache, is put in every process of the build through ``LD_PRELOAD``. It logs each file a
  process opens (``open``, ``openat``, ``fopen`` and their variants, through libc), the program
  that started and, at exit, the libraries it had mapped: a ``write`` per open, next to nothing.
  Statically linked programs and direct system calls are not seen.
- ``strace``: ``strace -f --seccomp-bpf`` follows every process; only the traced system calls
  stop the tracee, but each stop is a round trip through the tracer, about a third more time
  for a Python backend that opens a thousand files. ``-y`` prints the path the kernel resolved
  for each file opened, ``-ff`` writes one file per process (no line is ever split). It sees
  static programs too.

What is seen: every file a process of the build opened successfully (for reading, writing or
creating) and every program it ran. What is not: files only ``stat``-ed or listed (a header
that *would* shadow one found later on the include path), and anything a process does without
opening a file. A build started by a ``build_wheel`` plugin hook runs in buildprint's own
process and is not traced (its ``prepare_source`` step neither).
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TRACE_DIR_VARIABLE",
    "TRACE_VARIABLE",
    "Reads",
    "Tracer",
    "interpreter_roots",
    "parse_trace",
    "tracer",
]

#: ``BUILDPRINT_TRACE``: ``off`` builds untraced (no discovered inputs recorded), ``strace``
#: or ``preload`` picks that tracer (default: ``preload``, else ``strace``).
TRACE_VARIABLE = "BUILDPRINT_TRACE"
#: Where the preload tracer writes, one file per process (set in the build's environment).
TRACE_DIR_VARIABLE = "BUILDPRINT_TRACE_DIR"
_PRELOAD_SOURCE = Path(__file__).with_name("preload.c")
_PRELOAD_NAME = "libbuildprint-preload.so"

_SYSCALLS = "open,openat,openat2,creat,execve,execveat"
#: ``pid syscall(args) = result<resolved path>`` (one process per file: no interleaving).
_LINE = re.compile(r"^(\w+)\((.*)\) = (-?\d+)(?:<(.*)>)?(?: (E[A-Z0-9]+) \(.*\))?$")
_CWD = re.compile(r"^AT_FDCWD<(.*?)>, ")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_FLAGS = re.compile(r"\bO_[A-Z_|]+")
_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND", "O_TMPFILE"}
#: How the dynamic loader opens the shared objects it maps (glibc's ``open_verify``).
_LOADER_FLAGS = {"O_RDONLY", "O_CLOEXEC"}
_SHARED_OBJECT = re.compile(r"\.so(\.[0-9.]+)?$")


@dataclass(frozen=True)
class Reads:
    """The files one traced run touched, as absolute, resolved paths."""

    #: Opened for reading only, by anyone but the dynamic loader, and never written.
    read: frozenset[str]
    #: Programs executed.
    executed: frozenset[str]
    #: Shared objects the dynamic loader mapped: the code of the programs that ran.
    loaded: frozenset[str]
    #: Opened for writing or created (outputs and temporary files, never inputs).
    written: frozenset[str]
    #: Looked for to be read and not there (``ENOENT``): a header or library that, once it
    #: appears, would be found before the one the build used.
    absent: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Tracer:
    """How builds are traced here: ``kind`` (``preload`` or ``strace``) and ``path`` (the
    library or the program), or why they are not (``kind`` empty, ``problem`` says)."""

    kind: str = ""
    path: str = ""
    version: str = ""
    problem: str = ""

    def command(self, cmd: Sequence[str], folder: Path) -> list[str]:
        """``cmd`` as run traced, writing into ``folder``."""
        if self.kind != "strace":
            return list(cmd)
        return [
            self.path,
            "-f",
            "-ff",
            "--seccomp-bpf",
            "-qq",
            "-y",
            "-e",
            f"trace={_SYSCALLS}",
            "-e",
            "signal=none",
            "-o",
            str(folder / "trace"),
            "--",
            *cmd,
        ]

    def environ(self, environ: Mapping[str, str], folder: Path) -> dict[str, str]:
        """The build's variables, traced: the preload library first in ``LD_PRELOAD``."""
        out = dict(environ)
        if self.kind == "preload":
            out["LD_PRELOAD"] = " ".join(filter(None, (self.path, environ.get("LD_PRELOAD"))))
            out[TRACE_DIR_VARIABLE] = str(folder)
        return out


@functools.lru_cache(maxsize=1)
def tracer() -> Tracer:
    """The tracer that works here (each tried once: a machine may lack a C compiler, a
    container may forbid ``ptrace``), or why builds run untraced."""
    wanted = os.environ.get(TRACE_VARIABLE, "").lower()
    wanted = "" if wanted in ("1", "on", "yes", "true") else wanted
    if wanted in ("0", "off", "no", "false"):
        return Tracer(problem=f"{TRACE_VARIABLE}={os.environ[TRACE_VARIABLE]}")
    problems = []
    for kind, make in (("preload", _preload), ("strace", _strace)):
        if wanted in ("", kind):
            try:
                found = make()
            except OSError as exc:  # an unwritable cache, a compiler that cannot start
                found = Tracer(problem=f"the {kind} tracer cannot be set up: {exc}")
            if found.kind:
                return found
            problems.append(found.problem)
    return Tracer(problem="; ".join(problems) or f"{TRACE_VARIABLE}={wanted}: no such tracer")


def _preload() -> Tracer:
    """The preload library, compiled into the cache once per source and machine, tried."""
    source = _PRELOAD_SOURCE.read_bytes()
    key = hashlib.sha256(source + platform.machine().encode()).hexdigest()[:16]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    library = cache / "buildprint" / "preload" / key / _PRELOAD_NAME
    compiler = shutil.which("cc") or shutil.which("gcc")
    if not library.is_file():
        if compiler is None:
            return Tracer(problem="no C compiler (cc) to build the preload tracer with")
        library.parent.mkdir(parents=True, exist_ok=True)
        part = library.with_name(f".{os.getpid()}.part")
        done = subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-o", str(part), str(_PRELOAD_SOURCE), "-ldl"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            part.unlink(missing_ok=True)
            first = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[0]
            return Tracer(problem=f"the preload tracer does not compile here: {first}")
        os.replace(part, library)
    with tempfile.TemporaryDirectory(prefix="buildprint-trace-") as folder:
        probe = Tracer("preload", str(library))
        true = shutil.which("true") or "/bin/true"
        subprocess.run([true], env=probe.environ(os.environ, Path(folder)), check=False, timeout=30)
        if not any(Path(folder).glob("trace.*")):
            return Tracer(problem="the preload tracer does not load here")
    return Tracer("preload", str(library), f"preload {key}")


def _strace() -> Tracer:
    path = shutil.which("strace")
    if path is None:
        return Tracer(problem="strace is not installed (Debian: apt-get install strace)")
    probe = [path, "-f", "--seccomp-bpf", "-qq", "-e", "trace=none", "--"]
    try:
        done = subprocess.run(
            [*probe, shutil.which("true") or "/bin/true"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        version = subprocess.run(
            [path, "-V"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return Tracer(problem=f"{path} cannot run: {exc}")
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["exit " + str(done.returncode)])[0]
        return Tracer(problem=f"{path} cannot trace here: {first}")
    return Tracer("strace", path, (version.splitlines() or ["strace"])[0].strip())


_ROOTS = ("stdlib", "platstdlib", "include", "platinclude")


@functools.lru_cache(maxsize=8)
def interpreter_roots(python: str) -> tuple[str, ...]:
    """The folders of ``python``'s own installation a build reads as part of its build
    environment: the standard library and the headers (``sysconfig``), and the virtualenv it
    belongs to, if any (never a system prefix such as ``/usr``), resolved. Asked of
    ``python`` itself, unless it is the interpreter running buildprint."""
    found = shutil.which(python) or python
    if os.path.abspath(found) == os.path.abspath(sys.executable):
        paths = [sysconfig.get_paths()[key] for key in _ROOTS]
        venv = sys.prefix if sys.prefix != sys.base_prefix else None
    else:
        code = (
            "import json, sys, sysconfig; p = sysconfig.get_paths(); "
            f"print(json.dumps([[p[k] for k in {_ROOTS!r}], sys.prefix, sys.base_prefix]))"
        )
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
        paths, prefix, base = json.loads(done.stdout)
        venv = prefix if prefix != base else None
    if venv is not None:  # a virtualenv's interpreter: its pyvenv.cfg, its own folder
        paths.append(venv)
    return tuple(sorted({os.path.realpath(p) for p in paths}))


def parse_trace(files: Iterable[Path]) -> Reads:
    """The paths the processes traced into ``files`` (by either tracer) read, executed,
    loaded and wrote."""
    opened: set[str] = set()
    executed: set[str] = set()
    loaded: set[str] = set()
    written: set[str] = set()
    absent: set[str] = set()
    for file in files:
        try:
            text = file.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            continue
        for line in dict.fromkeys(text.splitlines()):
            if line[1:2] == "\t":  # the preload tracer's: KIND<TAB>absolute path
                kind, path = line[0], _resolved(line[2:])
                if kind in "RWXLN" and not path.endswith(_PRELOAD_NAME):
                    kinds = {"R": opened, "W": written, "X": executed, "L": loaded}
                    kinds.get(kind, absent).add(path)
                continue
            match = _LINE.match(line)
            if match is None:
                continue
            call, args, result, resolved, error = match.groups()
            found = _FLAGS.search(args.rsplit('"', 1)[-1])  # the flags follow the path
            flags = set(found.group(0).split("|")) if found else set()
            if result.startswith("-"):  # failed: only a file looked for and missing counts
                target = _first_string(args)
                loader = flags == _LOADER_FLAGS  # the dynamic loader's search: not the build's
                if error == "ENOENT" and target and not flags & _WRITE_FLAGS and not loader:
                    cwd = _CWD.match(args) if call != "open" else None
                    base = _unescape(cwd.group(1)) if cwd else ""
                    if os.path.isabs(target) or base:
                        absent.add(_resolved(os.path.join(base, target)))
                continue
            if call in ("execve", "execveat"):
                target = _first_string(args)
                if target and os.path.isabs(target):
                    executed.add(os.path.realpath(target))
                continue
            if resolved is None:
                continue
            path = _unescape(resolved)
            if "O_DIRECTORY" in flags:  # a folder listed: not a read of content
                continue
            if call == "creat" or flags & _WRITE_FLAGS:
                written.add(path)
            elif flags == _LOADER_FLAGS and _SHARED_OBJECT.search(path):
                loaded.add(path)
            else:
                opened.add(path)
    return Reads(
        read=frozenset(opened - written - loaded),
        executed=frozenset(executed - written),
        loaded=frozenset(loaded - written),
        written=frozenset(written),
        absent=frozenset(absent - opened - written),
    )


def _resolved(path: str) -> str:
    """``os.path.realpath(path)``, its folder resolved once per trace (thousands of files
    share a few dozen folders): one ``lstat`` a file."""
    folder, name = os.path.split(path)
    joined = os.path.join(_real_folder(folder), name)
    return os.path.realpath(joined) if name in ("", ".", "..") or os.path.islink(joined) else joined


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _first_string(args: str) -> str | None:
    match = _QUOTED.search(args)
    return _unescape(match.group(1)) if match else None


def _unescape(text: str) -> str:
    """A path as strace printed it (C escapes for what is not printable) back to its name."""
    if "\\" not in text:
        return text
    raw = codecs.escape_decode(text.encode("utf-8", "surrogateescape"))[0]
    return raw.decode("utf-8", "surrogateescape")
