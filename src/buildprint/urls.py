"""Credentials out of URLs and messages: nothing secret reaches a message, a log or a lock file."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact_url", "scrub_credentials"]

_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def redact_url(url: str) -> str:
    """``url`` without its user and password (a lock file written with it works anywhere)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def scrub_credentials(text: str) -> str:
    """Remove any ``user:pass@`` from free text (e.g. an httpx or uv message that echoes a URL)."""
    return _USERINFO.sub("***@", text)
