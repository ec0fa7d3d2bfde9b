"""What plugin code looked at while it ran, so its result can be trusted again later.

A ``signature`` or host hook may read the environment, open a file, probe whether a path
exists or ask what machine it runs on. While :func:`tracking` is active on a thread, this
records every environment variable read (``os.environ`` however it was imported), every file
or folder opened, listed or stat-ed, every *host probe* (``os.uname``, ``platform.uname``
and what goes through it, ``socket.gethostname``, ``os.cpu_count``, ``os.sched_getaffinity``,
``os.sysconf``, ``os.confstr``) with a digest of what it returned, and marks the run
*volatile* when the code did something whose result cannot be known without doing it again:
a subprocess, a socket, a shared library. A plan snapshot (see
:mod:`buildprint.plan.snapshot`) is reused only while all of it is unchanged; a host probe is
checked by calling it again (:func:`probe_digest`), which costs a system call, and a file of
``/proc`` or ``/sys`` by what it holds (:func:`content_state`: its ``stat`` never moves).

How: ``os.environ``'s class is swapped once for a subclass that reports reads; one audit hook
(:pep:`578`) reports opens, listings, ``socket.gethostname`` and process/network events;
``os.stat``, ``os.lstat`` and ``os.access`` (which ``Path.exists``, ``os.path.isdir`` and
``shutil.which`` go through) and the probe functions are wrapped only while some thread is
tracking. Threads that are not tracking pay one attribute lookup per event.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from buildprint.fsio import stat_key
from buildprint.signature.canonical import digest_bytes, digest_value

__all__ = [
    "CONTENT",
    "DIRECTORY",
    "PROBES",
    "HookReads",
    "by_content",
    "content_state",
    "is_content",
    "probe_digest",
    "probe_key",
    "state_now",
    "tracking",
]

#: The state kept of a folder that was only stat-ed: that it is one.
DIRECTORY = "directory"
#: How the state of a path kept by its content (:func:`content_state`) begins.
CONTENT = "content:"
_BY_CONTENT = ("/proc/", "/sys/")
_CONTENT_LIMIT = 1 << 20


@dataclass
class HookReads:
    """Everything tracked code looked at: variable names, and paths with their state when
    first seen (``None``: absent)."""

    env: set[str] = field(default_factory=set)
    paths: dict[str, str | None] = field(default_factory=dict)
    volatile: set[str] = field(default_factory=set)
    #: Host probes: :func:`probe_key` -> digest of what the first call returned.
    probes: dict[str, str] = field(default_factory=dict)

    def note_probe(self, name: str, args: tuple[Any, ...], outcome: Any) -> None:
        """Note that probe ``name`` was called with ``args`` and gave ``outcome`` (its value,
        or the exception it raised)."""
        key = probe_key(name, args)
        if key is None:
            self.volatile.add(f"{name} in a way that cannot be checked again")
        else:
            self.probes.setdefault(key, _outcome_digest(outcome))

    def note_path(self, path: Any, *, opened: bool = True) -> None:
        """Note ``path``: ``opened`` (read or listed) keeps its full state (under ``/proc``
        and ``/sys``, its content); only stat-ed, a folder keeps just that it is one (its
        times move whenever an entry is added, which a probe like ``Path.exists()`` does not
        care about)."""
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        elif not isinstance(path, str):
            path = os.fspath(path) if hasattr(path, "__fspath__") else None
        if not isinstance(path, str):
            return  # a file descriptor: what it refers to was opened (and noted) before
        path = os.path.abspath(path)
        kept = self.paths.get(path, DIRECTORY)
        if kept == DIRECTORY or (opened and by_content(path) and not is_content(kept)):
            self.paths[path] = _unwatched_state(path, opened)


_local = threading.local()
_install_lock = threading.Lock()
_installed = False
_wrap_users = 0
#: The wrapped functions while some thread is tracking: (module, name) -> the original.
_originals: dict[tuple[ModuleType, str], Any] = {}

_PATH_EVENTS = {"open", "os.listdir", "os.scandir"}
# Events whose outcome depends on something outside the files and variables we record.
_VOLATILE_EVENTS = {
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "os.forkpty",
    "socket.connect",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "urllib.Request",
    "ctypes.dlopen",
}


def _platform_fields(found: Any) -> tuple[str, ...]:
    """What ``platform.uname()`` says, but not ``processor``: reading that may run
    ``uname -p`` (which tracked code that asks for it is then volatile for)."""
    return (found.system, found.node, found.release, found.version, found.machine)


def _platform_uname() -> tuple[str, ...]:
    import platform  # only the checks of hooks that asked pay for it

    return _platform_fields(platform.uname())


def _gethostname() -> str:
    import socket

    return socket.gethostname()


def _affinity(pid: int) -> list[int]:
    return sorted(os.sched_getaffinity(pid))


#: The host probes, by name: calls whose result describes this machine (and nothing a file
#: or variable would show), evaluated again when a check asks. Each is called the way the
#: tracked code called it; ``os.sched_getaffinity`` only of this process (pid 0).
PROBES: dict[str, Callable[..., Any]] = {
    "os.uname": lambda: tuple(os.uname()),
    "platform.uname": _platform_uname,
    "socket.gethostname": _gethostname,
    "os.cpu_count": lambda: os.cpu_count(),
    "os.process_cpu_count": lambda: getattr(os, "process_cpu_count", os.cpu_count)(),
    "os.sched_getaffinity": _affinity,
    "os.sysconf": lambda name: os.sysconf(name),
    "os.confstr": lambda name: os.confstr(name),
}


def probe_key(name: str, args: tuple[Any, ...]) -> str | None:
    """How a probe call is kept: ``os.uname()``, ``os.sysconf("SC_NPROCESSORS_ONLN")``;
    ``None`` when it cannot be called again the same way (another process's affinity, an
    argument that is neither a string nor an integer)."""
    if name == "os.sched_getaffinity":
        if len(args) != 1 or args[0] not in (0, os.getpid()):
            return None
        args = (0,)
    if not all(isinstance(a, str | int) and not isinstance(a, bool) for a in args):
        return None
    return f"{name}({', '.join(json.dumps(a) for a in args)})"


def _outcome_digest(outcome: Any) -> str:
    if isinstance(outcome, BaseException):
        return digest_value({"raised": type(outcome).__name__})
    if isinstance(outcome, set | frozenset):
        outcome = sorted(outcome)
    elif isinstance(outcome, tuple):
        outcome = list(outcome)
    try:
        return digest_value({"value": outcome})
    except TypeError:
        return digest_value({"repr": repr(outcome)})


def probe_digest(key: str) -> str:
    """What probe ``key`` (from :func:`probe_key`) gives now, as :class:`HookReads` keeps it.
    A key this version does not know gives a digest no call gives: it reads as changed."""
    name, _, rest = key.partition("(")
    probe = PROBES.get(name)
    try:
        args = json.loads(f"[{rest[:-1]}]")
    except ValueError:
        probe = None
    if probe is None:
        return digest_value({"unknown": key})
    try:
        outcome = probe(*args)
    except Exception as exc:
        outcome = exc
    return _outcome_digest(outcome)


def _current() -> HookReads | None:
    reads: HookReads | None = getattr(_local, "reads", None)
    return reads


def by_content(path: str) -> bool:
    """Whether ``path`` is kept by its content: the files of ``/proc`` and ``/sys`` (the
    kernel's, whose ``stat`` stays put while what they say changes — a driver's version, the
    host name of a UTS namespace)."""
    return path.startswith(_BY_CONTENT)


def is_content(state: str | None) -> bool:
    """Whether ``state`` is one :func:`content_state` gave."""
    return state is not None and state.startswith(CONTENT)


def content_state(path: str) -> str | None:
    """The state kept of a file or folder read by content: a digest of what it holds (of a
    folder: its entries' names); ``None``: absent. Read without blocking, up to 1 MiB."""
    try:
        if os.path.isdir(path):
            data = "\0".join(sorted(os.listdir(path))).encode("utf-8", "surrogateescape")
        else:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                chunks: list[bytes] = []
                size = 0
                while size < _CONTENT_LIMIT and (chunk := os.read(fd, _CONTENT_LIMIT - size)):
                    chunks.append(chunk)
                    size += len(chunk)
                data = b"".join(chunks)
            finally:
                os.close(fd)
    except FileNotFoundError:
        return None
    except OSError as exc:  # what it answers now: unreadable is a state too
        return f"{CONTENT}{type(exc).__name__}:{exc.errno}"
    return CONTENT + digest_bytes(data)


def state_now(path: str, kept: str | None) -> str | None:
    """``path``'s state now, in the form ``kept`` (a state :class:`HookReads` noted, or a
    :func:`~buildprint.fsio.stat_key`) was taken in."""
    if kept == DIRECTORY and os.path.isdir(path):
        return DIRECTORY
    if is_content(kept):
        return content_state(path)
    return stat_key(path)


def _unwatched_state(path: str, opened: bool) -> str | None:
    _local.paused = True  # stat_key goes through os.stat, which may be wrapped
    try:
        if not opened and os.path.isdir(path):
            return DIRECTORY
        if opened and by_content(path):
            return content_state(path)
        return stat_key(path)
    finally:
        _local.paused = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    reads = _current()
    if reads is None or getattr(_local, "paused", False):
        return
    if event in _PATH_EVENTS:
        if args and args[0] is not None:
            reads.note_path(args[0])
        elif event != "open":
            reads.note_path(".")  # listdir() / scandir() with no argument: the cwd
    elif event in _VOLATILE_EVENTS:
        reads.volatile.add(event)
        if _inherits_environment(event, args):
            reads.env.add("*")  # the process gets, so may read, the whole environment
    elif event == "socket.gethostname":
        # Raised before the call: ask once more, untracked, for what it is about to return.
        _local.paused = True
        try:
            try:
                outcome: Any = _gethostname()
            except OSError as exc:
                outcome = exc
        finally:
            _local.paused = False
        reads.note_probe(event, (), outcome)


def _inherits_environment(event: str, args: tuple[Any, ...]) -> bool:
    """Whether a process-starting event hands the child this process's whole environment
    (``subprocess`` without ``env=``, ``os.system``, an ``exec`` without an environment)."""
    if event == "os.system":
        return True
    if event == "subprocess.Popen":  # (executable, args, cwd, env)
        return len(args) > 3 and args[3] is None
    if event == "os.exec":  # (path, args, env)
        return len(args) > 2 and args[2] is None
    return False


class _TrackedEnviron(os._Environ[str]):
    """``os.environ``'s own class with reads reported; the object and its data stay the same."""

    def __getitem__(self, key: Any) -> Any:
        reads = _current()
        if reads is not None:
            reads.env.add(str(key))
        return super().__getitem__(key)

    def __iter__(self) -> Iterator[Any]:
        reads = _current()
        if reads is not None:
            reads.env.add("*")  # the whole environment was looked at
        return super().__iter__()

    def __len__(self) -> int:
        reads = _current()
        if reads is not None:
            reads.env.add("*")
        return super().__len__()


def _tracked_now() -> HookReads | None:
    reads = _current()
    return None if reads is None or getattr(_local, "paused", False) else reads


def _wrap_stat(original: Any, name: str) -> Any:
    def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
        reads = _tracked_now()
        if reads is not None:
            reads.note_path(path, opened=False)
        return original(path, *args, **kwargs)

    return wrapper


def _wrap_probe(original: Any, name: str) -> Any:
    def wrapper(*args: Any) -> Any:
        reads = _tracked_now()
        if reads is None:
            return original(*args)
        _local.paused = True  # platform.uname() calls os.uname(): one probe, the one asked
        try:
            result = original(*args)
        except Exception as exc:
            reads.note_probe(name, args, exc)
            raise
        finally:
            _local.paused = False
        if name == "platform.uname":
            reads.note_probe(name, args, _platform_fields(result))
        else:
            reads.note_probe(name, args, result)
        return result

    return wrapper


def _wrapped() -> list[tuple[ModuleType, str, Callable[[Any, str], Any]]]:
    """What :func:`tracking` wraps: (module, function name, wrapper factory)."""
    import platform  # its uname() caches: wrap it, not just os.uname

    found: list[tuple[ModuleType, str, Callable[[Any, str], Any]]] = [
        (os, name, _wrap_stat) for name in ("stat", "lstat", "access")
    ]
    for qualified in PROBES:
        module_name, _, name = qualified.partition(".")
        module = {"os": os, "platform": platform}.get(module_name)
        if module is not None and hasattr(module, name):  # socket: by its audit event
            found.append((module, name, _wrap_probe))
    return found


def _install_once() -> None:
    global _installed
    if _installed:
        return
    sys.addaudithook(_audit)
    if type(os.environ) is os._Environ:
        os.environ.__class__ = _TrackedEnviron
    _installed = True


@contextmanager
def tracking(reads: HookReads) -> Iterator[HookReads]:
    """Record into ``reads`` what the current thread looks at inside the block."""
    global _wrap_users
    with _install_lock:
        _install_once()
        if _wrap_users == 0:
            for module, name, wrap in _wrapped():
                original = _originals[module, name] = getattr(module, name)
                wrapper = wrap(original, f"{module.__name__}.{name}")
                wrapper.__name__ = original.__name__
                wrapper.__doc__ = original.__doc__
                setattr(module, name, wrapper)
        _wrap_users += 1
    outer = _current()
    _local.reads = reads
    try:
        yield reads
    finally:
        _local.reads = outer
        with _install_lock:
            _wrap_users -= 1
            if _wrap_users == 0:
                for (module, name), original in _originals.items():
                    setattr(module, name, original)
                _originals.clear()
        if outer is not None:  # nested tracking: the outer run looked at all of it too
            outer.env |= reads.env
            outer.volatile |= reads.volatile
            for path, state in reads.paths.items():
                outer.paths.setdefault(path, state)
            for key, digest in reads.probes.items():
                outer.probes.setdefault(key, digest)
