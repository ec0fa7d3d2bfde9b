"""Publish wheelhouse wheels to a package index that accepts uploads (pypiserver, devpi).

Uses the upload API twine speaks (``POST`` multipart with ``:action=file_upload``), so pip and
uv users can install the results from that index.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from packaging.utils import parse_wheel_filename

from buildprint.errors import InputError, StoreError

__all__ = ["Published", "publish"]


@dataclass(frozen=True)
class Published:
    wheel: str
    status: str  # uploaded | exists


def _credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without userinfo, and the credentials from it or from the environment."""
    parts = urlsplit(url)
    user = (
        parts.username
        or os.environ.get("BUILDPRINT_PUBLISH_USER")
        or os.environ.get("TWINE_USERNAME")
    )
    password = (
        parts.password
        or os.environ.get("BUILDPRINT_PUBLISH_PASSWORD")
        or os.environ.get("TWINE_PASSWORD")
    )
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    clean = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    return clean, (user, password) if user and password else None


def publish(
    wheels: Iterable[Path], repository_url: str, *, timeout: float = 120.0
) -> list[Published]:
    """Upload each wheel; a wheel the server already has is reported as ``exists``."""
    url, auth = _credentials(repository_url)
    if urlsplit(url).scheme not in ("http", "https"):
        raise InputError(f"repository URL must be http(s): {url}")
    results = []
    with httpx.Client(auth=auth, timeout=timeout) as client:
        for wheel in sorted(wheels):
            name, version, _build, _tags = parse_wheel_filename(wheel.name)
            data = wheel.read_bytes()
            fields = {
                ":action": "file_upload",
                "protocol_version": "1",
                "name": str(name),
                "version": str(version),
                "filetype": "bdist_wheel",
                "pyversion": "py3",
                "metadata_version": "2.1",
                "sha256_digest": hashlib.sha256(data).hexdigest(),
            }
            try:
                response = client.post(
                    url,
                    data=fields,
                    files={"content": (wheel.name, data, "application/octet-stream")},
                )
            except httpx.HTTPError as exc:
                raise StoreError(f"cannot reach {url}: {type(exc).__name__}") from None
            if response.status_code == 409:
                results.append(Published(wheel.name, "exists"))
            elif response.is_success:
                results.append(Published(wheel.name, "uploaded"))
            else:
                raise StoreError(
                    f"{url} refused {wheel.name}: "
                    f"HTTP {response.status_code} {response.reason_phrase}"
                )
    return results
