"""Plain GETs on kept-alive ``http.client`` connections: the hot path of a fetch.

Blob and record downloads are read with ``readinto`` into one reused buffer. For the same
bytes that costs about half the CPU of httpx's streaming layers, and a presigned S3 URL
fetched this way about two thirds of a boto3 ``get_object`` (``bench/bench_fetch.py``). The
HTTP and S3 remotes use it for GETs only; everything else goes through their own clients.
"""

from __future__ import annotations

import contextlib
import http.client
import queue
import ssl
from collections.abc import Iterator, Mapping

import certifi

from buildprint.store.remote import DEFAULT_READ_TIMEOUT, RemoteTimeout, RemoteUnavailable

__all__ = ["DirectGets", "read_all"]

_CHUNK = 1 << 20
#: A refusal (404, 403…) up to this size is read to its end so its connection can be reused.
_DRAIN_LIMIT = 1 << 16


class DirectGets:
    """Keep-alive connections to one server, each taken by one thread for one request.

    ``url`` is what messages name (already redacted). A connection goes back to the pool
    once its answer was read to the end, and is closed on any trouble. No proxy is used; TLS
    verifies against ``cafile`` (default: certifi's roots, as httpx and botocore do).

    ``timeout`` bounds each wait for the server (the answer, each piece of a body);
    ``connect_timeout`` (default: ``timeout``) the connection and TLS handshake. A wait past
    either raises ``RemoteTimeout``.
    """

    def __init__(
        self,
        url: str,
        scheme: str,
        host: str,
        port: int | None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_READ_TIMEOUT,
        connect_timeout: float | None = None,
        cafile: str | None = None,
    ) -> None:
        self._url = url
        self._host = host
        self._port = port
        self._timeout = timeout
        self._connect_timeout = timeout if connect_timeout is None else connect_timeout
        self._headers = {"Accept-Encoding": "identity", **(headers or {})}
        self._context = (
            ssl.create_default_context(cafile=cafile or certifi.where())
            if scheme == "https"
            else None
        )
        self._idle: queue.SimpleQueue[http.client.HTTPConnection] = queue.SimpleQueue()

    @contextlib.contextmanager
    def get(self, target: str, what: str) -> Iterator[tuple[int, Iterator[memoryview]]]:
        """GET ``target`` (path and query); yield the status and the body in pieces of one
        reused buffer, each to be consumed before the next.

        A kept-alive connection the server had closed meanwhile is replaced once. Transport
        trouble, before or during the body, raises ``RemoteUnavailable`` (``RemoteTimeout`` for
        a server that stopped answering); ``target`` never appears in a message (a presigned
        URL carries a signature).
        """
        conn, response = self._send(target, what)
        failure = f"remote {self._url} failed while sending {what}"
        try:
            yield response.status, _read_into(response, failure, self._url, self._timeout)
        finally:
            if response.status != 200 and not response.isclosed():
                _drain(response)
            if response.isclosed() and not response.will_close:
                self._idle.put(conn)
            else:
                conn.close()

    def _send(
        self, target: str, what: str
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        for fresh in (False, True):
            conn, reused = self._take(fresh=fresh)
            connecting = conn.sock is None
            try:
                if connecting:
                    conn.connect()  # under the connect timeout; then the read timeout applies
                    connecting = False
                    conn.sock.settimeout(self._timeout)
                conn.request("GET", target, headers=self._headers)
                return conn, conn.getresponse()
            except TimeoutError:
                conn.close()
                # A server that stalls is not retried: that would only double the wait.
                stall = (
                    f"accepted no connection within {self._connect_timeout:g} s"
                    if connecting
                    else f"did not answer {what} within {self._timeout:g} s"
                )
                raise RemoteTimeout(
                    f"remote {self._url} {stall} (timed out)", url=self._url
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                if reused and not fresh:
                    continue
                # The exception's own text is left out: it could quote the target.
                detail = f": {exc.strerror}" if isinstance(exc, OSError) and exc.strerror else ""
                raise RemoteUnavailable(
                    f"remote {self._url} unreachable: {type(exc).__name__}{detail}", url=self._url
                ) from None
        raise AssertionError("unreachable")

    def _take(self, *, fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection (``True``: it was used before), or a new one."""
        if not fresh:
            with contextlib.suppress(queue.Empty):
                return self._idle.get_nowait(), True
        if self._context is not None:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self._connect_timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self._connect_timeout)
        return conn, False

    def close(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


def _read_into(
    response: http.client.HTTPResponse, failure: str, url: str, timeout: float
) -> Iterator[memoryview]:
    """The body in pieces of one reused buffer; a connection failing mid-body (including a
    body shorter than announced) raises ``RemoteUnavailable``, one stalling ``RemoteTimeout``."""
    buffer = memoryview(bytearray(_CHUNK))
    while True:
        try:
            count = response.readinto(buffer)
        except TimeoutError:
            raise RemoteTimeout(
                f"{failure}: no data for {timeout:g} s (timed out)", url=url
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise RemoteUnavailable(f"{failure}: {type(exc).__name__}", url=url) from None
        if not count:
            return
        yield buffer[:count]


def read_all(body: Iterator[memoryview]) -> bytes:
    """A whole (small) body from ``DirectGets.get``; each piece is copied before the buffer
    is read into again."""
    return b"".join(bytes(piece) for piece in body)


def _drain(response: http.client.HTTPResponse) -> None:
    if response.length is not None and response.length <= _DRAIN_LIMIT:
        with contextlib.suppress(OSError, http.client.HTTPException):
            response.read()
