"""Stores: the embedded local store and remote caches (HTTP, S3); ``open_remote`` opens one."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from buildprint.errors import InputError
from buildprint.urls import redact_url

if TYPE_CHECKING:
    from buildprint.store.remote import Remote, RemoteTimeouts

__all__ = ["open_remote"]


def open_remote(url: str, *, writable: bool, timeouts: RemoteTimeouts | None = None) -> Remote:
    """Open ``http(s)://host/path`` (WebDAV or bazel-remote style) or ``s3://bucket/prefix``.

    The implementations are imported here, on first use: the local store (and a no-op plan)
    never pays for httpx or boto3, and the ``Remote`` protocol module imports neither.
    ``timeouts`` (default 5 s to connect, 10 s per answer) bound a stalled server.
    """
    from buildprint.store.remote import check_remote_url

    scheme = urlsplit(check_remote_url(url)).scheme.lower()
    if scheme in {"http", "https"}:
        from buildprint.store.http import HttpRemote

        return HttpRemote(url, writable=writable, timeouts=timeouts)
    if scheme == "s3":
        from buildprint.store.s3 import S3Remote

        return S3Remote(url, writable=writable, timeouts=timeouts)
    raise InputError(f"remote URL {redact_url(url)!r}: scheme must be http, https or s3")
