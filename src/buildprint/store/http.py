"""HTTP remote cache (nginx WebDAV, bazel-remote): GET/HEAD/PUT with pooled keep-alive connections.

GETs of blobs and records, the hot path of a fetch, go through ``DirectGets`` (plain
``http.client`` connections, about half the CPU of httpx for the same bytes); everything else
uses one pooled httpx client.

Records are created atomically and never overwritten: the envelope is PUT to ``tmp/<uuid>``
and then moved into ``ac/`` with WebDAV ``MOVE`` and ``Overwrite: F`` (nginx answers 412 when
the entry exists). nginx ignores ``If-None-Match`` on PUT, so that header is only the fallback
for servers without MOVE. Blobs are PUT straight to ``cas/<sha256>``: nginx buffers the body to
a temp file and renames it into place only when complete, and every reader re-hashes anyway.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import netrc
import os
import uuid
from collections.abc import Generator, Iterator
from datetime import UTC
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit
from xml.etree import ElementTree

import httpx

from buildprint.store.direct import DirectGets, read_all
from buildprint.store.record import is_digest
from buildprint.store.remote import (
    RemoteAccessDenied,
    RemoteEntry,
    RemoteError,
    RemoteMissing,
    RemoteTimeout,
    RemoteTimeouts,
    RemoteUnavailable,
    UploadIntegrityError,
    check_digest,
    write_verified,
)
from buildprint.urls import redact_url

__all__ = ["HttpRemote"]

_CHUNK = 1 << 20
#: Answers meaning "this server has no MOVE": fall back to a conditional PUT.
_NO_MOVE = {405, 501}
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class HttpRemote:
    """A remote cache at an ``http(s)://`` base URL.

    Auth, first match wins: ``BUILDPRINT_REMOTE_TOKEN`` (bearer), user and password in the
    URL, ``BUILDPRINT_REMOTE_USER``/``BUILDPRINT_REMOTE_PASSWORD``, then netrc (``NETRC`` or
    ``~/.netrc``). One pooled client is shared by all threads. ``timeouts`` bound how long
    a stalled server can hold a request (``RemoteTimeout``).
    """

    def __init__(
        self,
        url: str,
        *,
        writable: bool,
        timeouts: RemoteTimeouts | None = None,
        max_connections: int = 64,
    ) -> None:
        timeouts = timeouts or RemoteTimeouts()
        parts = urlsplit(url)
        host = parts.hostname or ""
        netloc = host if parts.port is None else f"{host}:{parts.port}"
        if ":" in host:  # IPv6 literal
            netloc = f"[{host}]" if parts.port is None else f"[{host}]:{parts.port}"
        self._base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._url = redact_url(url)
        self._writable = writable
        authorization = _authorization(parts.username, parts.password, host)
        self._client = httpx.Client(
            auth=_HeaderAuth(authorization) if authorization is not None else None,
            timeout=httpx.Timeout(timeouts.read, connect=timeouts.connect),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            # Proxies from the environment would see our credentials; a cache URL is explicit.
            trust_env=False,
            follow_redirects=False,
        )
        self._prefix = parts.path.rstrip("/")
        self._gets = DirectGets(
            self._url,
            parts.scheme,
            host,
            parts.port,
            headers={"Authorization": authorization} if authorization is not None else None,
            timeout=timeouts.read,
            connect_timeout=timeouts.connect,
        )
        self._timeouts = timeouts

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
        self._gets.close()

    # -- requests --------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: object) -> httpx.Response:
        try:
            response = self._client.request(method, f"{self._base}/{path}", **kwargs)  # type: ignore[arg-type]
        except httpx.TimeoutException as exc:
            limit = (
                self._timeouts.connect
                if isinstance(exc, httpx.ConnectTimeout)
                else self._timeouts.read
            )
            raise RemoteTimeout(
                f"remote {self._url} did not answer {method} {path} within {limit:g} s "
                f"({type(exc).__name__})",
                url=self._url,
            ) from None
        except httpx.TransportError as exc:
            raise RemoteUnavailable(
                f"remote {self._url} unreachable: {type(exc).__name__}: {exc}", url=self._url
            ) from None
        self._check(response.status_code, method, path)
        return response

    def _check(self, status: int, method: str, path: str) -> None:
        if status in {401, 403}:
            raise RemoteAccessDenied(
                f"remote {self._url} refused {method} {path}: {status} (check credentials)",
                url=self._url,
            )
        if status >= 500:
            raise RemoteUnavailable(
                f"remote {self._url} failed {method} {path}: {status}", url=self._url
            )

    def _unexpected(self, response: httpx.Response | int, method: str, path: str) -> RemoteError:
        status = response if isinstance(response, int) else response.status_code
        return RemoteError(
            f"remote {self._url}: unexpected {status} for {method} {path}", url=self._url
        )

    # -- records ---------------------------------------------------------------------

    def get_record(self, signature: str) -> bytes | None:
        path = f"ac/{check_digest(signature, 'signature', self._url)}"
        with self._get(path, f"record {signature}") as body:
            return None if body is None else read_all(body)

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

    def get_blob(self, sha256: str, dest: Path) -> int:
        path = f"cas/{check_digest(sha256, 'blob', self._url)}"
        with self._get(path, f"blob {sha256}") as body:
            if body is None:
                raise RemoteMissing(f"remote {self._url} has no blob {sha256}", url=self._url)
            return write_verified(body, sha256, dest, url=self._url)

    @contextlib.contextmanager
    def _get(self, path: str, what: str) -> Iterator[Iterator[memoryview] | None]:
        """GET ``path`` (``DirectGets``): yield the body, or None for a 404; other answers
        raise as ``_check`` says."""
        with self._gets.get(f"{self._prefix}/{path}", what) as (status, body):
            self._check(status, "GET", path)
            if status not in {200, 404}:
                raise self._unexpected(status, "GET", path)
            yield body if status == 200 else None

    def put_blob(self, sha256: str, path: Path) -> None:
        key = f"cas/{check_digest(sha256, 'blob', self._url)}"
        self._require_writable()
        if self.has_blob(sha256):
            return
        size = path.stat().st_size
        if size == 0 and sha256 != _EMPTY_SHA256:
            # No last piece to hold back (see _verified_chunks): refuse before sending.
            raise UploadIntegrityError(
                f"local blob {sha256} is empty: corrupt, not uploaded to {self._url}",
                url=self._url,
            )
        response = self._request(
            "PUT",
            key,
            content=_verified_chunks(path, sha256, self._url),
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


def _verified_chunks(path: Path, sha256: str, url: str) -> Iterator[bytes]:
    """The file's bytes, hashed as they go; the last piece is held back until the whole file
    is known to hash to ``sha256``. On a mismatch it is never sent: the server gets fewer
    bytes than ``Content-Length`` announced and stores nothing (nginx drops the body)."""
    hasher = hashlib.sha256()
    held = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
            if held:
                yield held
            held = chunk
    got = hasher.hexdigest()
    if got != sha256:
        raise UploadIntegrityError(
            f"local blob {sha256} hashes to {got}: corrupt, not uploaded to {url}", url=url
        )
    if held:
        yield held


class _HeaderAuth(httpx.Auth):
    """Sets ``Authorization`` on every request; its repr never shows the value."""

    def __init__(self, value: str) -> None:
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self._value
        yield request

    def __repr__(self) -> str:
        return "_HeaderAuth(***)"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _authorization(user: str | None, password: str | None, host: str) -> str | None:
    """The ``Authorization`` header value (bearer or basic), or None; see ``HttpRemote``."""
    token = os.environ.get("BUILDPRINT_REMOTE_TOKEN")
    if token:
        return f"Bearer {token}"
    if user is not None and password is not None:
        return _basic(unquote(user), unquote(password))
    env_user = os.environ.get("BUILDPRINT_REMOTE_USER")
    env_password = os.environ.get("BUILDPRINT_REMOTE_PASSWORD")
    if env_user and env_password is not None:
        return _basic(env_user, env_password)
    netrc_file = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    if os.path.isfile(netrc_file):
        try:
            entry = netrc.netrc(netrc_file).authenticators(host)
        except (netrc.NetrcParseError, OSError):
            entry = None
        if entry is not None and entry[2] is not None:
            return _basic(entry[0] or "", entry[2])
    return None
