"""What plugin code looked at while it ran, so its result can be trusted again later.

A ``signature`` or host hook may read the environment, open a file or probe whether a path
exists. While :func:`tracking` is active on a thread, this records every environment
variable read (``os.environ`` however it was imported), every file or folder opened, listed
or stat-ed, and marks the run *volatile* when the code did something whose result cannot be
known without doing it again: a subprocess, a socket, a shared library. A plan snapshot
(see :mod:`buildprint.plan.snapshot`) is reused only while all of it is unchanged.

How: ``os.environ``'s class is swapped once for a subclass that reports reads; one audit hook
(:pep:`578`) reports opens, listings and process/network events; ``os.stat``, ``os.lstat``
and ``os.access`` (which ``Path.exists``, ``os.path.isdir`` and ``shutil.which`` go
through) are wrapped only while some thread is tracking. Threads that are not tracking pay
one attribute lookup per event.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from buildprint.fsio import stat_key

__all__ = ["DIRECTORY", "HookReads", "tracking"]

#: The state kept of a folder that was only stat-ed: that it is one.
DIRECTORY = "directory"


@dataclass
class HookReads:
    """Everything tracked code looked at: variable names, and paths with their state when
    first seen (``None``: absent)."""

    env: set[str] = field(default_factory=set)
    paths: dict[str, str | None] = field(default_factory=dict)
    volatile: set[str] = field(default_factory=set)

    def note_path(self, path: Any, *, opened: bool = True) -> None:
        """Note ``path``: ``opened`` (read or listed) keeps its full state; only stat-ed, a
        folder keeps just that it is one (its times move whenever an entry is added, which
        a probe like ``Path.exists()`` does not care about)."""
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        elif not isinstance(path, str):
            path = os.fspath(path) if hasattr(path, "__fspath__") else None
        if not isinstance(path, str):
            return  # a file descriptor: what it refers to was opened (and noted) before
        path = os.path.abspath(path)
        if self.paths.get(path, DIRECTORY) == DIRECTORY:
            self.paths[path] = _unwatched_state(path, opened)


_local = threading.local()
_install_lock = threading.Lock()
_installed = False
_stat_users = 0
_originals: dict[str, Any] = {}

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


def _current() -> HookReads | None:
    reads: HookReads | None = getattr(_local, "reads", None)
    return reads


def _unwatched_state(path: str, opened: bool) -> str | None:
    _local.paused = True  # stat_key goes through os.stat, which may be wrapped
    try:
        if not opened and os.path.isdir(path):
            return DIRECTORY
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


def _wrap_stat(name: str) -> Any:
    original = _originals[name]

    def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
        reads = _current()
        if reads is not None and not getattr(_local, "paused", False):
            reads.note_path(path, opened=False)
        return original(path, *args, **kwargs)

    wrapper.__name__ = original.__name__
    wrapper.__doc__ = original.__doc__
    return wrapper


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
    global _stat_users
    with _install_lock:
        _install_once()
        if _stat_users == 0:
            for name in ("stat", "lstat", "access"):
                _originals[name] = getattr(os, name)
                setattr(os, name, _wrap_stat(name))
        _stat_users += 1
    outer = _current()
    _local.reads = reads
    try:
        yield reads
    finally:
        _local.reads = outer
        with _install_lock:
            _stat_users -= 1
            if _stat_users == 0:
                for name, original in _originals.items():
                    setattr(os, name, original)
        if outer is not None:  # nested tracking: the outer run looked at all of it too
            outer.env |= reads.env
            outer.volatile |= reads.volatile
            for path, state in reads.paths.items():
                outer.paths.setdefault(path, state)
