"""Remote caches: the ``Remote`` protocol, its errors, and the verified download they share.

Every backend uses one layout under its base: ``ac/<signature>`` (signed record envelopes)
and ``cas/<sha256>`` (blobs), the bazel-remote layout. Nothing read from a remote is trusted
until it is verified: blobs against their sha256 here, records by ``signing.verify_envelope``.
This module imports no implementation: ``buildprint.store.open_remote`` picks one by URL.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from buildprint.errors import StoreError
from buildprint.store.record import is_digest

#: Temp names of downloads: a per-process random token and a counter (no syscall per name).
_PART_TOKEN = uuid.uuid4().hex[:12]
_part_counter = itertools.count()

__all__ = [
    "Remote",
    "RemoteAccessDenied",
    "RemoteEntry",
    "RemoteError",
    "RemoteIntegrityError",
    "RemoteMissing",
    "RemoteUnavailable",
    "check_digest",
    "write_verified",
]


class RemoteError(StoreError):
    """A remote cache operation failed; messages never carry credentials."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class RemoteUnavailable(RemoteError):
    """The remote cannot be reached (refused, timed out, 5xx): report once and go on without it."""


class RemoteAccessDenied(RemoteError):
    """The remote refused our credentials (401/403)."""


class RemoteMissing(RemoteError):
    """A blob a record refers to is not on the remote."""


class RemoteIntegrityError(RemoteError):
    """A downloaded blob does not hash to its name: the remote copy is corrupt or tampered."""


@dataclass(frozen=True)
class RemoteEntry:
    """One ``ac/`` entry as a listing shows it: no content read, nothing verified."""

    signature: str
    size: int | None
    modified: str | None  # ISO-8601 UTC ("...Z") when the server says


@runtime_checkable
class Remote(Protocol):
    """One remote cache. ``url`` is always the redacted form (no password, no token)."""

    @property
    def url(self) -> str: ...

    @property
    def writable(self) -> bool: ...

    def get_record(self, signature: str) -> bytes | None:
        """The stored envelope bytes for ``signature``, or None if there is none."""
        ...

    def put_record(self, signature: str, data: bytes) -> bool:
        """Create ``ac/<signature>``; False if an entry already exists (never overwritten)."""
        ...

    def list_records(self) -> Iterator[RemoteEntry]:
        """Every ``ac/`` entry whose name is a signature (others are skipped), unverified."""
        ...

    def has_blob(self, sha256: str) -> bool:
        """True if ``cas/<sha256>`` exists (its content is checked only on download)."""
        ...

    def get_blob(self, sha256: str, dest: Path) -> int:
        """Download to ``dest`` via a temp file, verified; return its size. On a mismatch
        raise and leave nothing."""
        ...

    def put_blob(self, sha256: str, path: Path) -> None:
        """Upload ``path`` as ``cas/<sha256>`` unless the remote already has it."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


def check_digest(value: str, what: str, url: str) -> str:
    """Refuse anything but a lowercase hex sha256: it becomes part of a remote object name."""
    if not is_digest(value):
        raise RemoteError(f"{what} {value!r} is not a sha256 hex digest", url=url)
    return value


def write_verified(
    chunks: Iterable[bytes | memoryview], sha256: str, dest: Path, *, url: str
) -> int:
    """Stream ``chunks`` into a temp file beside ``dest``; rename only if the sha256 matches.

    A mismatch (or any error mid-stream) removes the temp file, so a reader never sees a
    partial or tampered blob at ``dest``.
    """
    tmp = dest.with_name(f".{dest.name}.{_PART_TOKEN}{next(_part_counter)}.part")
    hasher = hashlib.sha256()
    size = 0
    try:
        try:
            handle = open(tmp, "xb")  # noqa: SIM115 - closed by the with below
        except FileNotFoundError:
            dest.parent.mkdir(parents=True, exist_ok=True)
            handle = open(tmp, "xb")  # noqa: SIM115
        with handle:
            for chunk in chunks:
                hasher.update(chunk)
                size += handle.write(chunk)
        got = hasher.hexdigest()
        if got != sha256:
            raise RemoteIntegrityError(
                f"blob {sha256} from {url} hashes to {got}: corrupt or tampered, not used",
                url=url,
            )
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return size
