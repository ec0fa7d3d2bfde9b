"""What a build read: the backend run under ``strace``, its trace read back into paths.

``strace -f`` follows every process the backend starts (compilers, linkers, ``pkg-config``,
anything); with ``--seccomp-bpf`` only the traced system calls stop the tracee, so the cost is
one round trip per ``open``/``exec``, not per system call. ``-y`` prints the path the kernel
resolved for each file opened (symlinks followed, relative paths made absolute), and ``-ff``
writes one file per process, so no line is ever split between two of them.

What is seen: every file a process of the build opened successfully (for reading, writing or
creating) and every program it executed. What is not: files only ``stat``-ed or listed
(a header that *would* shadow one found later on the include path, a folder scanned for
plugins), reads through memory-mapped files other than the opens themselves, and anything a
process does without a system call. A build started by a ``build_wheel`` plugin hook runs in
buildprint's own process and is not traced (its ``prepare_source`` step neither).
"""

from __future__ import annotations

import codecs
import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TRACER",
    "TRACE_VARIABLE",
    "Reads",
    "Tracer",
    "interpreter_roots",
    "parse_trace",
    "traced",
    "tracer",
]

#: The tracing program; a build without it still builds, its reads unrecorded.
TRACER = "strace"
#: ``BUILDPRINT_TRACE=off`` builds untraced (no discovered inputs recorded): for measuring
#: what tracing costs, or where ``ptrace`` is unwelcome.
TRACE_VARIABLE = "BUILDPRINT_TRACE"

_SYSCALLS = "open,openat,openat2,creat,execve,execveat"
#: ``pid syscall(args) = result<resolved path>`` (one process per file: no interleaving).
_LINE = re.compile(r"^(\w+)\((.*)\) = (-?\d+)(?:<(.*)>)?$")
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
_FLAGS = re.compile(r"\bO_[A-Z_|]+")
_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND", "O_TMPFILE"}
#: How the dynamic loader opens the shared objects it maps (glibc's ``open_verify``).
_LOADER_FLAGS = {"O_RDONLY", "O_CLOEXEC"}
_SHARED_OBJECT = re.compile(r"\.so(\.[0-9.]+)?$")


@dataclass(frozen=True)
class Reads:
    """The files one traced run touched, as absolute paths the kernel resolved."""

    #: Opened for reading only, by anyone but the dynamic loader, and never written.
    read: frozenset[str]
    #: Programs executed (the path given to ``execve``, resolved).
    executed: frozenset[str]
    #: Shared objects the dynamic loader mapped: the code of the programs that ran.
    loaded: frozenset[str]
    #: Opened for writing or created (outputs and temporary files, never inputs).
    written: frozenset[str]


@dataclass(frozen=True)
class Tracer:
    """This machine's ``strace``: its path and version, or why there is none usable."""

    path: str | None
    version: str = ""
    problem: str = ""


@functools.lru_cache(maxsize=1)
def tracer() -> Tracer:
    """The ``strace`` that can trace here (found on ``PATH`` and tried once: a container
    may forbid ``ptrace``), or why builds run untraced (also: ``BUILDPRINT_TRACE=off``)."""
    if os.environ.get(TRACE_VARIABLE, "").lower() in ("0", "off", "no", "false"):
        return Tracer(None, problem=f"{TRACE_VARIABLE}={os.environ[TRACE_VARIABLE]}")
    path = shutil.which(TRACER)
    if path is None:
        return Tracer(None, problem=f"{TRACER} is not installed (Debian: apt-get install strace)")
    probe = [
        path,
        "-f",
        "--seccomp-bpf",
        "-qq",
        "-e",
        "trace=none",
        "--",
        shutil.which("true") or "/bin/true",
    ]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30, check=False)
        version = subprocess.run(
            [path, "-V"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return Tracer(None, problem=f"{path} cannot run: {exc}")
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["exit " + str(done.returncode)])[0]
        return Tracer(None, problem=f"{path} cannot trace here: {first}")
    return Tracer(path, (version.splitlines() or [TRACER])[0].strip())


@functools.lru_cache(maxsize=8)
def interpreter_roots(python: str) -> tuple[str, ...]:
    """The folders of ``python``'s own installation a build reads as part of its build
    environment: the standard library and the headers (``sysconfig``), resolved."""
    code = (
        "import json, sysconfig; p = sysconfig.get_paths(); "
        "print(json.dumps([p[k] for k in ('stdlib', 'platstdlib', 'include', 'platinclude')]))"
    )
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    return tuple(sorted({os.path.realpath(p) for p in json.loads(done.stdout)}))


def traced(cmd: Sequence[str], strace: str, prefix: Path) -> list[str]:
    """``cmd`` under ``strace``, one trace file per process at ``prefix.<pid>``."""
    return [
        strace,
        "-f",
        "-ff",
        "--seccomp-bpf",
        "-qq",
        "-z",  # successful calls only: a failed probe of an include folder is not a read
        "-y",
        "-e",
        f"trace={_SYSCALLS}",
        "-e",
        "signal=none",
        "-o",
        str(prefix),
        "--",
        *cmd,
    ]


def parse_trace(files: Iterable[Path]) -> Reads:
    """The paths the processes traced into ``files`` read, executed, loaded and wrote."""
    opened: set[str] = set()
    executed: set[str] = set()
    loaded: set[str] = set()
    written: set[str] = set()
    for file in files:
        try:
            text = file.read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            continue
        for line in text.splitlines():
            match = _LINE.match(line)
            if match is None:
                continue
            call, args, _result, resolved = match.groups()
            if call in ("execve", "execveat"):
                target = _first_string(args)
                if target and os.path.isabs(target):
                    executed.add(os.path.realpath(target))
                continue
            if resolved is None:
                continue
            path = _unescape(resolved)
            found = _FLAGS.search(args.rsplit('"', 1)[-1])  # the flags follow the path
            flags = set(found.group(0).split("|")) if found else set()
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
    )


def _first_string(args: str) -> str | None:
    match = _QUOTED.search(args)
    return _unescape(match.group(1)) if match else None


def _unescape(text: str) -> str:
    """A path as strace printed it (C escapes for what is not printable) back to its name."""
    if "\\" not in text:
        return text
    raw = codecs.escape_decode(text.encode("utf-8", "surrogateescape"))[0]
    return raw.decode("utf-8", "surrogateescape")
