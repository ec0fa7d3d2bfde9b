"""HTTP remote cache (nginx WebDAV, bazel-remote): GET/HEAD/PUT with pooled keep-alive connections.

Records are created atomically and never overwritten: the envelope is PUT to ``tmp/<uuid>``
and then moved into ``ac/`` with WebDAV ``MOVE`` and ``Overwrite: F`` (nginx answers 412 when
the entry exists). nginx ignores ``If-None-Match`` on PUT, so that header is only the fallback
for servers without MOVE. Blobs are PUT straight to ``cas/<sha256>``: nginx buffers the body to
a temp file and renames it into place only when complete, and every reader re-hashes anyway.
"""

from __future__ import annotations

import contextlib
import email.utils
import netrc
import os
import uuid
from collections.abc import Generator, Iterator
from datetime import UTC
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit
from xml.etree import ElementTree

import httpx

from buildprint.store.record import is_digest
from buildprint.store.remote import (
    RemoteAccessDenied,
    RemoteEntry,
    RemoteError,
    RemoteMissing,
    RemoteUnavailable,
    check_digest,
    redact_url,
    write_verified,
)

__all__ = ["HttpRemote"]

_CHUNK = 1 << 20
#: Answers meaning "this server has no MOVE": fall back to a conditional PUT.
_NO_MOVE = {405, 501}


class HttpRemote:
    """A remote cache at an ``http(s)://`` base URL.

    Auth, first match wins: ``BUILDPRINT_REMOTE_TOKEN`` (bearer), user and password in the
    URL, ``BUILDPRINT_REMOTE_USER``/``BUILDPRINT_REMOTE_PASSWORD``, then netrc (``NETRC`` or
    ``~/.netrc``). One pooled client is shared by all threads.
    """

    def __init__(
        self,
        url: str,
        *,
        writable: bool,
        timeout: float = 60.0,
        max_connections: int = 64,
    ) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        if ":" in host:  # IPv6 literal
            netloc = f"[{host}]" if parts.port is None else f"[{host}]:{parts.port}"
        self._base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._url = redact_url(url)
        self._writable = writable
        self._client = httpx.Client(
            auth=_auth_for(parts.username, parts.password, host),
            timeout=httpx.Timeout(timeout, connect=5.0),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # Proxies from the environment would see our credentials; a cache URL is explicit.
            trust_env=False,
            follow_redirects=False,
        )

    @property
    def url(self) -> str:
        return self._url

    @property
    def writable(self) -> bool:
        return self._writable

    def __repr__(self) -> str:
        return f"HttpRemote({self._url!r}, writable={self._writable})"

    __str__ = __repr__

    def close(self) -> None:
        self._client.close()

    # -- requests --------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = self._client.request(method, f"{self._base}/{path}", **kwargs)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise RemoteUnavailable(
                f"remote {self._url} unreachable: {type(exc).__name__}: {exc}", url=self._url
            ) from None
        self._check(response, method, path)
        return response

    def _check(self, response: httpx.Response, method: str, path: str) -> None:
        status = response.status_code
        if status in {401, 403}:
            raise RemoteAccessDenied(
                f"remote {self._url} refused {method} {path}: {status} (check credentials)",
                url=self._url,
            )
        if status >= 500:
            raise RemoteUnavailable(
                f"remote {self._url} failed {method} {path}: {status}", url=self._url
            )

    def _unexpected(self, response: httpx.Response, method: str, path: str) -> RemoteError:
        return RemoteError(
            f"remote {self._url}: unexpected {response.status_code} for {method} {path}",
            url=self._url,
        )

    # -- records ---------------------------------------------------------------------

    def get_record(self, signature: str) -> bytes | None:
        path = f"ac/{check_digest(signature, 'signature', self._url)}"
        response = self._request("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise self._unexpected(response, "GET", path)
        return response.content

    def put_record(self, signature: str, data: bytes) -> bool:
        path = f"ac/{check_digest(signature, 'signature', self._url)}"
        self._require_writable()
        # Cheap early answer in the common case; the MOVE below is what makes it race-free.
        if self._request("HEAD", path).status_code == 200:
            return False
        tmp = f"tmp/{uuid.uuid4().hex}"
        response = self._request("PUT", tmp, content=data)
        if response.status_code in _NO_MOVE | {404, 409}:
            return self._put_if_none_match(path, data)
        if response.status_code not in {200, 201, 204}:
            raise self._unexpected(response, "PUT", tmp)
        try:
            moved = self._request(
                "MOVE",
                tmp,
                headers={"Destination": f"{self._base}/{path}", "Overwrite": "F"},
            )
            if moved.status_code == 412:
                return False
            if moved.status_code in _NO_MOVE:
                return self._put_if_none_match(path, data)
            if moved.status_code not in {200, 201, 204}:
                raise self._unexpected(moved, "MOVE", tmp)
            return True
        finally:
            # After a successful MOVE the temp name is gone already; this only cleans refusals.
            with contextlib.suppress(RemoteError):
                self._request("DELETE", tmp)

    def _put_if_none_match(self, path: str, data: bytes) -> bool:
        response = self._request("PUT", path, content=data, headers={"If-None-Match": "*"})
        if response.status_code == 412:
            return False
        if response.status_code not in {200, 201, 204}:
            raise self._unexpected(response, "PUT", path)
        return True

    def list_records(self) -> Iterator[RemoteEntry]:
        """``ac/`` entries via WebDAV ``PROPFIND`` (``Depth: 1``); nginx needs ``dav_ext``."""
        path = "ac/"
        response = self._request(
            "PROPFIND",
            path,
            content=_PROPFIND_BODY,
            headers={"Depth": "1", "Content-Type": "application/xml"},
        )
        if response.status_code == 404:
            return iter(())  # nothing pushed yet
        if response.status_code in _NO_MOVE:
            raise RemoteError(
                f"remote {self._url} cannot list entries: it does not answer WebDAV PROPFIND "
                "(nginx: load the dav_ext module, `dav_ext_methods PROPFIND OPTIONS;`)",
                url=self._url,
            )
        if response.status_code != 207:
            raise self._unexpected(response, "PROPFIND", path)
        return iter(_parse_multistatus(response.content, self._url))

    # -- blobs -----------------------------------------------------------------------

    def has_blob(self, sha256: str) -> bool:
        path = f"cas/{check_digest(sha256, 'blob', self._url)}"
        response = self._request("HEAD", path)
        if response.status_code == 404:
            return False
        if response.status_code != 200:
            raise self._unexpected(response, "HEAD", path)
        return True

    def get_blob(self, sha256: str, dest: Path) -> None:
        path = f"cas/{check_digest(sha256, 'blob', self._url)}"
        try:
            with self._client.stream("GET", f"{self._base}/{path}") as response:
                self._check(response, "GET", path)
                if response.status_code == 404:
                    raise RemoteMissing(f"remote {self._url} has no blob {sha256}", url=self._url)
                if response.status_code != 200:
                    raise self._unexpected(response, "GET", path)
                write_verified(response.iter_bytes(_CHUNK), sha256, dest, url=self._url)
        except httpx.TransportError as exc:
            raise RemoteUnavailable(
                f"remote {self._url} failed while sending blob {sha256}: {type(exc).__name__}",
                url=self._url,
            ) from None

    def put_blob(self, sha256: str, path: Path) -> None:
        key = f"cas/{check_digest(sha256, 'blob', self._url)}"
        self._require_writable()
        if self.has_blob(sha256):
            return
        size = path.stat().st_size
        response = self._request(
            "PUT",
            key,
            content=_read_chunks(path),
            headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
        )
        if response.status_code not in {200, 201, 204}:
            raise self._unexpected(response, "PUT", key)

    def _require_writable(self) -> None:
        if not self._writable:
            raise RemoteError(f"remote {self._url} is read-only (write = false)", url=self._url)


_DAV = "{DAV:}"
_PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?><propfind xmlns="DAV:"><prop>'
    b"<getcontentlength/><getlastmodified/><resourcetype/></prop></propfind>"
)


def _parse_multistatus(body: bytes, url: str) -> list[RemoteEntry]:
    """Signature entries of a PROPFIND answer, sorted; the collection itself is skipped."""
    # A listing never needs a DTD; refusing one rules out entity-expansion tricks.
    if b"<!DOCTYPE" in body[:4096].upper() or b"<!ENTITY" in body.upper():
        raise RemoteError(f"remote {url}: PROPFIND answer carries a DTD; refused", url=url)
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        raise RemoteError(f"remote {url}: malformed PROPFIND answer: {exc}", url=url) from None
    entries: list[RemoteEntry] = []
    for response in root.iter(f"{_DAV}response"):
        href = response.findtext(f"{_DAV}href") or ""
        name = unquote(urlsplit(href).path).rstrip("/").rpartition("/")[2]
        if not is_digest(name) or response.find(f".//{_DAV}collection") is not None:
            continue
        length = response.findtext(f".//{_DAV}getcontentlength")
        modified = response.findtext(f".//{_DAV}getlastmodified")
        entries.append(
            RemoteEntry(
                signature=name,
                size=int(length) if length and length.strip().isdigit() else None,
                modified=_http_date(modified),
            )
        )
    entries.sort(key=lambda e: e.signature)
    return entries


def _http_date(value: str | None) -> str | None:
    """RFC 1123 date (as WebDAV sends) to ISO-8601 UTC with ``Z``; None if absent or odd."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk


class _BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>``; its repr never shows the token."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "_BearerAuth(***)"


def _auth_for(user: str | None, password: str | None, host: str) -> httpx.Auth | None:
    """Bearer, basic or no auth; see ``HttpRemote`` for the order."""
    token = os.environ.get("BUILDPRINT_REMOTE_TOKEN")
    if token:
        return _BearerAuth(token)
    if user is not None and password is not None:
        return httpx.BasicAuth(unquote(user), unquote(password))
    env_user = os.environ.get("BUILDPRINT_REMOTE_USER")
    env_password = os.environ.get("BUILDPRINT_REMOTE_PASSWORD")
    if env_user and env_password is not None:
        return httpx.BasicAuth(env_user, env_password)
    netrc_file = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    if os.path.isfile(netrc_file):
        try:
            entry = netrc.netrc(netrc_file).authenticators(host)
        except (netrc.NetrcParseError, OSError):
            entry = None
        if entry is not None and entry[2] is not None:
            return httpx.BasicAuth(entry[0] or "", entry[2])
    return None
