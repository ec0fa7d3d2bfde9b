"""DirectGets against a real nginx: verified blob GETs, refusals, and kept-alive connections.

Which connections the client holds is read from ``/proc`` (this process's TCP sockets to the
server's port), not from the client's internals.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from buildprint.store.direct import DirectGets, read_all
from buildprint.store.remote import RemoteIntegrityError, RemoteUnavailable, write_verified
from tests.support.servers._proc import free_port
from tests.support.servers.nginx import NginxDav, start_nginx

pytestmark = [
    pytest.mark.servers,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/net/tcp"),
]

_ESTABLISHED = "01"
_CLOSE_WAIT = "08"  # the server closed its end; ours is still open


def _sockets_to(port: int) -> dict[int, str]:
    """This process's TCP sockets to 127.0.0.1:``port``: local port -> state (hex, as Linux
    writes it in ``/proc/net/tcp``)."""
    mine: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[len("socket:[") : -1])
    found: dict[int, str] = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
        if inode in mine and int(remote.rpartition(":")[2], 16) == port:
            found[int(local.rpartition(":")[2], 16)] = state
    return found


class _Cache:
    """A cache base on nginx: where its files are, and the GET target of each."""

    def __init__(self, server: NginxDav, url: str) -> None:
        self.port = server.port
        self.prefix = urlsplit(url).path
        self.root = server.data / self.prefix.strip("/")
        # Connections to the session's nginx that earlier tests of this process still hold
        # (their clients' pools) are not this test's: only newer ones are looked at.
        self._older = set(_sockets_to(self.port))

    def sockets(self) -> dict[int, str]:
        """The sockets this test opened to the server: local port -> state."""
        return {p: s for p, s in _sockets_to(self.port).items() if p not in self._older}

    def open_sockets(self) -> set[int]:
        return {p for p, state in self.sockets().items() if state == _ESTABLISHED}

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / "cas" / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return sha

    def target(self, sha: str) -> str:
        return f"{self.prefix}/cas/{sha}"


@pytest.fixture
def cache(nginx_server: NginxDav, http_url: str) -> _Cache:
    return _Cache(nginx_server, http_url)


@pytest.fixture
def gets(cache: _Cache) -> Iterator[DirectGets]:
    client = DirectGets("http://cache.test", "http", "127.0.0.1", cache.port)
    yield client
    client.close()


def _download(gets: DirectGets, cache: _Cache, sha: str, dest: Path) -> int:
    with gets.get(cache.target(sha), f"blob {sha}") as (status, body):
        assert status == 200
        return write_verified(body, sha, dest, url="http://cache.test")


def test_present_blob_is_downloaded_and_verified_by_digest(
    cache: _Cache, gets: DirectGets, tmp_path: Path
) -> None:
    data = os.urandom(3 << 20)  # several pieces of the client's 1 MiB buffer
    sha = cache.put(data)
    dest = tmp_path / "out" / sha
    assert _download(gets, cache, sha, dest) == len(data)
    assert dest.read_bytes() == data
    assert list(dest.parent.iterdir()) == [dest]  # no temp file left beside it


def test_read_all_copies_each_piece_of_the_reused_buffer(cache: _Cache, gets: DirectGets) -> None:
    data = os.urandom((2 << 20) + 12345)  # pieces that would overwrite each other if not copied
    sha = cache.put(data)
    with gets.get(cache.target(sha), "record") as (status, body):
        assert status == 200
        assert read_all(body) == data


def test_missing_blob_answers_404_and_its_connection_is_kept(
    cache: _Cache, gets: DirectGets
) -> None:
    with gets.get(cache.target("0" * 64), "blob") as (status, _body):
        assert status == 404  # the refusal body is drained on leaving, not read by the caller
    kept = cache.open_sockets()
    assert len(kept) == 1
    sha = cache.put(b"after a refusal")
    with gets.get(cache.target(sha), "blob") as (status, body):
        assert status == 200 and read_all(body) == b"after a refusal"
    assert cache.open_sockets() == kept


def test_digest_mismatch_is_detected_and_leaves_nothing(
    cache: _Cache, gets: DirectGets, tmp_path: Path
) -> None:
    sha = cache.put(b"genuine wheel bytes" * 1000)
    stored = cache.root / "cas" / sha
    stored.write_bytes(b"evil" + stored.read_bytes()[4:])  # same size, other bytes
    dest = tmp_path / "out" / sha
    with pytest.raises(RemoteIntegrityError, match=f"blob {sha} .* hashes to "):
        _download(gets, cache, sha, dest)
    assert list(dest.parent.iterdir()) == []
    # The answer was read to its end: the connection is still good for the next GET.
    good = cache.put(b"an intact blob")
    assert _download(gets, cache, good, tmp_path / "out" / good) == len(b"an intact blob")


def test_one_kept_alive_connection_serves_consecutive_gets(
    cache: _Cache, gets: DirectGets, tmp_path: Path
) -> None:
    assert cache.open_sockets() == set()
    blobs = [cache.put(b"blob %d" % i * 1000) for i in range(5)]
    seen: list[set[int]] = []
    for sha in blobs:
        _download(gets, cache, sha, tmp_path / sha)
        seen.append(cache.open_sockets())
    assert len(seen[0]) == 1
    assert all(ports == seen[0] for ports in seen)


def test_concurrent_gets_take_separate_connections_and_return_them(
    cache: _Cache, gets: DirectGets
) -> None:
    first, second = cache.put(b"first"), cache.put(b"second")
    with (
        gets.get(cache.target(first), "blob") as (status_a, body_a),
        gets.get(cache.target(second), "blob") as (status_b, body_b),
    ):
        assert (status_a, status_b) == (200, 200)
        assert read_all(body_a) == b"first" and read_all(body_b) == b"second"
        both = cache.open_sockets()
    assert len(both) == 2
    # Both went back to the pool: the next two GETs at once use the same two connections.
    with (
        gets.get(cache.target(first), "blob") as (_, body_a),
        gets.get(cache.target(second), "blob") as (_, body_b),
    ):
        assert read_all(body_a) == b"first" and read_all(body_b) == b"second"
        assert cache.open_sockets() == both


def test_a_body_left_unread_closes_its_connection(cache: _Cache, gets: DirectGets) -> None:
    data = os.urandom(4 << 20)
    sha = cache.put(data)
    with gets.get(cache.target(sha), "blob") as (status, body):
        assert status == 200
        assert len(next(body)) > 0  # the caller stops after one piece (an error, a mismatch)
    # Its connection still has the rest of the body in flight: closed, never pooled.
    assert cache.sockets() == {}
    with gets.get(cache.target(sha), "blob") as (status, body):
        assert status == 200 and read_all(body) == data


def test_a_connection_the_server_will_close_is_not_kept(cache: _Cache, gets: DirectGets) -> None:
    # nginx answers a too-long target with 414 and "Connection: close".
    with gets.get(cache.prefix + "/" + "x" * 20_000, "blob") as (status, _body):
        assert status == 414
    assert cache.sockets() == {}  # closed by the client too, not pooled half-dead
    sha = cache.put(b"next")
    with gets.get(cache.target(sha), "blob") as (status, body):
        assert status == 200 and read_all(body) == b"next"
    assert len(cache.open_sockets()) == 1


def test_unreachable_server_raises_without_quoting_the_target() -> None:
    port = free_port()
    gets = DirectGets("http://cache.test", "http", "127.0.0.1", port, timeout=5)
    with (
        pytest.raises(RemoteUnavailable) as caught,
        gets.get("/cas/x?X-Amz-Signature=secret-presigned", "blob"),
    ):
        pass
    message = str(caught.value)
    assert "http://cache.test unreachable: ConnectionRefusedError" in message
    assert "secret-presigned" not in message
    assert caught.value.url == "http://cache.test"


@pytest.fixture
def own_nginx(tmp_path: Path) -> Iterator[NginxDav]:
    """An nginx of this test alone, free to be reloaded."""
    server = start_nginx(tmp_path / "nginx", user="u", password="p", token="t")
    yield server
    server.stop()


def test_kept_alive_connection_the_server_closed_is_replaced(
    own_nginx: NginxDav, tmp_path: Path
) -> None:
    cache = _Cache(own_nginx, f"{own_nginx.url}/open/cache")
    gets = DirectGets("http://cache.test", "http", "127.0.0.1", cache.port)
    try:
        sha = cache.put(b"before the reload")
        assert _download(gets, cache, sha, tmp_path / "a") == len(b"before the reload")
        [idle] = cache.open_sockets()
        # A reload retires the old worker, which closes its idle keep-alive connections.
        own_nginx.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while cache.sockets().get(idle) != _CLOSE_WAIT:
            assert time.monotonic() < deadline, "nginx did not close the idle connection"
            time.sleep(0.05)
        later = cache.put(b"after the reload")
        assert _download(gets, cache, later, tmp_path / "b") == len(b"after the reload")
        [fresh] = cache.open_sockets()
        assert fresh != idle
        assert idle not in cache.sockets()  # the dead one was closed, not kept
    finally:
        gets.close()
