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
from urllib.parse import urlsplit

from buildprint.errors import InputError, StoreError
from buildprint.store.record import is_digest
from buildprint.urls import redact_url, scrub_credentials

#: Temp names of downloads: a per-process random token and a counter (no syscall per name).
_PART_TOKEN = uuid.uuid4().hex[:12]
_part_counter = itertools.count()

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_READ_TIMEOUT",
    "REMOTE_SCHEMES",
    "Remote",
    "RemoteAccessDenied",
    "RemoteEntry",
    "RemoteError",
    "RemoteIntegrityError",
    "RemoteMissing",
    "RemoteTimeout",
    "RemoteTimeouts",
    "RemoteUnavailable",
    "UploadIntegrityError",
    "check_digest",
    "check_remote_url",
    "write_verified",
]

#: URL schemes ``buildprint.store.open_remote`` opens.
REMOTE_SCHEMES = ("http", "https", "s3")
#: Seconds to wait for a connection, and for each answer (or piece of one), by default.
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 10.0


class RemoteError(StoreError):
    """A remote cache operation failed; messages never carry credentials."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class RemoteUnavailable(RemoteError):
    """The remote cannot be reached (refused, timed out, 5xx): report once and go on without it."""


class RemoteTimeout(RemoteUnavailable):
    """The remote accepted (or never accepted) the connection but did not answer in time."""


class RemoteAccessDenied(RemoteError):
    """The remote refused our credentials (401/403)."""


class RemoteMissing(RemoteError):
    """A blob a record refers to is not on the remote."""


class RemoteIntegrityError(RemoteError):
    """A downloaded blob does not hash to its name: the remote copy is corrupt or tampered."""


class UploadIntegrityError(RemoteError):
    """A local blob about to be uploaded does not hash to its name: it was not stored."""


@dataclass(frozen=True)
class RemoteTimeouts:
    """How long a remote may take: ``connect`` to accept a connection, ``read`` for each
    answer (and each piece of a body). A stall past them is a ``RemoteTimeout``."""

    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT

    @classmethod
    def of(
        cls, timeout: float | None, connect: float | None = None, read: float | None = None
    ) -> RemoteTimeouts:
        """From the settings: ``connect``/``read`` if given, else ``timeout``, else defaults."""
        if connect is None:
            connect = DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout
        if read is None:
            read = DEFAULT_READ_TIMEOUT if timeout is None else timeout
        return cls(connect=float(connect), read=float(read))


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


def check_remote_url(url: str) -> str:
    """Return ``url`` if it names a remote cache buildprint can open; else ``InputError``.

    The one check for ``[[remote]] url`` and ``--remote``: a scheme of ``REMOTE_SCHEMES``, a
    host (``http(s)``) or bucket (``s3``), a valid port, no query or fragment (they would be
    dropped silently). Messages show the URL without its user and password.
    """
    try:
        shown = redact_url(url)
    except ValueError:  # a malformed port: redact_url cannot parse it, the pattern can
        shown = scrub_credentials(url)
    if not url or url != url.strip() or any(c.isspace() or ord(c) < 32 for c in url):
        raise InputError(f"remote URL {shown!r} is empty or contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # a malformed port raises here
    except ValueError as exc:
        raise InputError(f"remote URL {shown!r} is malformed: {exc}") from None
    schemes = ", ".join(REMOTE_SCHEMES[:-1]) + f" or {REMOTE_SCHEMES[-1]}"
    if "://" not in url or parts.scheme not in REMOTE_SCHEMES:
        given = f"not {parts.scheme!r}" if "://" in url else "it has none"
        raise InputError(f"remote URL {shown!r}: scheme must be {schemes} ({given})")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise InputError(f"remote URL {shown!r} must not have a query or fragment")
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InputError(f"remote URL {shown!r} names no bucket (s3://bucket/prefix)")
        if "@" in parts.netloc or port is not None or ":" in parts.netloc:
            raise InputError(
                f"remote URL {shown!r}: s3:// takes a bucket name only (endpoint and credentials "
                "come from BUILDPRINT_S3_ENDPOINT/AWS_ENDPOINT_URL and the usual AWS settings)"
            )
    elif not parts.hostname:
        raise InputError(f"remote URL {shown!r} names no host ({parts.scheme}://host/path)")
    return url


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
