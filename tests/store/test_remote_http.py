"""HTTP remote against a real nginx WebDAV server: layout, conditional create, integrity, auth."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from buildprint.store import open_remote
from buildprint.store.remote import (
    RemoteAccessDenied,
    RemoteError,
    RemoteIntegrityError,
    RemoteMissing,
    RemoteUnavailable,
)
from tests.support.servers._proc import free_port
from tests.support.servers.nginx import NginxDav

pytestmark = pytest.mark.servers

SIG = "5" * 64


def _data_dir(server: NginxDav, url: str) -> Path:
    return server.data / urlsplit(url).path.strip("/")


def test_record_and_blob_round_trip_in_bazel_layout(
    nginx_server: NginxDav, http_url: str, tmp_path: Path
) -> None:
    remote = open_remote(http_url, writable=True)
    assert remote.get_record(SIG) is None
    assert remote.put_record(SIG, b"envelope-1") is True
    assert remote.get_record(SIG) == b"envelope-1"
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(300_000))
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    assert not remote.has_blob(sha)
    remote.put_blob(sha, blob)
    assert remote.has_blob(sha)
    remote.get_blob(sha, tmp_path / "out" / "copy")
    assert (tmp_path / "out" / "copy").read_bytes() == blob.read_bytes()
    base = _data_dir(nginx_server, http_url)
    assert (base / "ac" / SIG).read_bytes() == b"envelope-1"
    assert (base / "cas" / sha).read_bytes() == blob.read_bytes()
    # Nothing is left at temp names once a record is in place.
    assert list((base / "tmp").iterdir()) == []


def test_second_put_record_is_refused_and_content_kept(http_url: str) -> None:
    remote = open_remote(http_url, writable=True)
    assert remote.put_record(SIG, b"first") is True
    assert remote.put_record(SIG, b"second") is False
    assert remote.get_record(SIG) == b"first"


def test_concurrent_publishers_leave_one_consistent_entry(http_url: str) -> None:
    remote = open_remote(http_url, writable=True)
    barrier = threading.Barrier(8)
    results: dict[int, bool] = {}

    def publish(i: int) -> None:
        barrier.wait()
        results[i] = remote.put_record(SIG, f"writer-{i}".encode() * 1000)

    threads = [threading.Thread(target=publish, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, created in results.items() if created]
    assert len(winners) == 1
    assert remote.get_record(SIG) == f"writer-{winners[0]}".encode() * 1000


def test_concurrent_processes_publish_one_entry(http_url: str) -> None:
    code = (
        "import sys; from buildprint.store import open_remote;"
        "r = open_remote(sys.argv[1], writable=True);"
        "print(r.put_record('" + SIG + "', sys.argv[2].encode() * 5000))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, http_url, f"p{i}"], stdout=subprocess.PIPE, text=True
        )
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outputs) == ["False", "False", "False", "True"]
    winner = outputs.index("True")
    assert open_remote(http_url, writable=False).get_record(SIG) == f"p{winner}".encode() * 5000


def test_tampered_blob_is_detected_and_nothing_left(
    nginx_server: NginxDav, http_url: str, tmp_path: Path
) -> None:
    remote = open_remote(http_url, writable=True)
    blob = tmp_path / "blob"
    blob.write_bytes(b"genuine wheel bytes" * 1000)
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    remote.put_blob(sha, blob)
    stored = _data_dir(nginx_server, http_url) / "cas" / sha
    stored.write_bytes(b"evil" + stored.read_bytes()[4:])
    dest = tmp_path / "out" / "blob"
    with pytest.raises(RemoteIntegrityError):
        remote.get_blob(sha, dest)
    assert list((tmp_path / "out").iterdir()) == []


def test_missing_blob_raises_remote_missing(http_url: str, tmp_path: Path) -> None:
    remote = open_remote(http_url, writable=False)
    with pytest.raises(RemoteMissing):
        remote.get_blob("0" * 64, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_killed_upload_leaves_no_object_at_the_final_name(
    nginx_server: NginxDav, http_url: str
) -> None:
    sha = "7" * 64
    path = urlsplit(http_url).path + f"/cas/{sha}"
    # A raw client announces 4 MB, sends half, and is killed: nginx must not commit it.
    code = (
        "import socket, sys, time\n"
        f"s = socket.create_connection(('127.0.0.1', {nginx_server.port}))\n"
        f"s.sendall(b'PUT {path} HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 4000000\\r\\n\\r\\n')\n"
        "s.sendall(b'x' * 2000000)\n"
        "print('sent', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "sent"
    proc.kill()
    proc.wait()
    time.sleep(0.2)
    remote = open_remote(http_url, writable=False)
    assert remote.has_blob(sha) is False
    assert not (_data_dir(nginx_server, http_url) / "cas" / sha).exists()


def test_partial_object_at_a_temp_name_is_never_read(nginx_server: NginxDav, http_url: str) -> None:
    # What a publisher killed between upload and MOVE leaves behind: a temp object only.
    tmp = _data_dir(nginx_server, http_url) / "tmp"
    tmp.mkdir(parents=True)
    (tmp / "abandoned").write_bytes(b"half an envelope")
    remote = open_remote(http_url, writable=True)
    assert remote.get_record(SIG) is None
    assert remote.put_record(SIG, b"complete") is True
    assert remote.get_record(SIG) == b"complete"


def test_closed_port_raises_remote_unavailable() -> None:
    remote = open_remote(f"http://127.0.0.1:{free_port()}/cache", writable=True)
    with pytest.raises(RemoteUnavailable):
        remote.get_record(SIG)
    with pytest.raises(RemoteUnavailable):
        remote.has_blob("0" * 64)


def test_read_only_remote_refuses_writes(http_url: str) -> None:
    with pytest.raises(RemoteError, match="read-only"):
        open_remote(http_url, writable=False).put_record(SIG, b"x")


def test_non_digest_keys_never_reach_the_server(http_url: str, tmp_path: Path) -> None:
    remote = open_remote(http_url, writable=True)
    with pytest.raises(RemoteError):
        remote.get_record("../../etc/passwd")
    with pytest.raises(RemoteError):
        remote.get_blob("A" * 64, tmp_path / "x")


def test_basic_auth_from_url_and_secret_never_shown(
    nginx_server: NginxDav, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("BUILDPRINT_REMOTE_TOKEN", "BUILDPRINT_REMOTE_USER", "BUILDPRINT_REMOTE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    host = urlsplit(nginx_server.url).netloc
    url = f"http://{nginx_server.user}:{nginx_server.password}@{host}/basic/{os.urandom(4).hex()}"
    remote = open_remote(url, writable=True)
    assert remote.put_record(SIG, b"x") is True
    assert nginx_server.password not in remote.url
    assert nginx_server.password not in repr(remote) and nginx_server.password not in str(remote)
    wrong = open_remote(url.replace(nginx_server.password, "wrong-pw"), writable=True)
    with pytest.raises(RemoteAccessDenied) as info:
        wrong.get_record(SIG)
    assert "wrong-pw" not in str(info.value)


def test_basic_auth_from_environment_and_netrc(
    nginx_server: NginxDav, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BUILDPRINT_REMOTE_TOKEN", raising=False)
    url = f"{nginx_server.url}/basic/{os.urandom(4).hex()}"
    with pytest.raises(RemoteAccessDenied):
        open_remote(url, writable=False).get_record(SIG)
    monkeypatch.setenv("BUILDPRINT_REMOTE_USER", nginx_server.user)
    monkeypatch.setenv("BUILDPRINT_REMOTE_PASSWORD", nginx_server.password)
    assert open_remote(url, writable=True).put_record(SIG, b"env") is True
    monkeypatch.delenv("BUILDPRINT_REMOTE_USER")
    monkeypatch.delenv("BUILDPRINT_REMOTE_PASSWORD")
    netrc = tmp_path / "netrc"
    netrc.write_text(
        f"machine 127.0.0.1 login {nginx_server.user} password {nginx_server.password}\n"
    )
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert open_remote(url, writable=False).get_record(SIG) == b"env"


def test_bearer_token_from_environment(
    nginx_server: NginxDav, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"{nginx_server.url}/bearer/{os.urandom(4).hex()}"
    monkeypatch.setenv("BUILDPRINT_REMOTE_TOKEN", "not-the-token")
    with pytest.raises(RemoteAccessDenied) as info:
        open_remote(url, writable=False).get_record(SIG)
    assert "not-the-token" not in str(info.value)
    monkeypatch.setenv("BUILDPRINT_REMOTE_TOKEN", nginx_server.token)
    remote = open_remote(url, writable=True)
    assert remote.put_record(SIG, b"tok") is True
    assert remote.get_record(SIG) == b"tok"
    assert nginx_server.token not in repr(remote)


def test_keep_alive_reuses_connections(nginx_server: NginxDav, http_url: str) -> None:
    remote = open_remote(http_url, writable=False)
    before = _established_to(nginx_server.port)
    for _ in range(50):
        remote.get_record(SIG)
    # 50 sequential requests on one pooled connection, not 50 connections.
    assert _established_to(nginx_server.port) - before <= 1


def test_a_kept_alive_connection_the_server_closed_is_replaced(
    nginx_server: NginxDav, http_url: str, tmp_path: Path
) -> None:
    writer = open_remote(http_url, writable=True)
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(200_000))
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    writer.put_blob(sha, blob)
    remote = open_remote(http_url, writable=False)
    remote.get_blob(sha, tmp_path / "first")
    before = _established_to(nginx_server.port)
    # A reload makes nginx's old workers close their idle keep-alive connections.
    nginx_server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while _established_to(nginx_server.port) >= before and time.monotonic() < deadline:
        time.sleep(0.05)
    remote.get_blob(sha, tmp_path / "second")
    assert (tmp_path / "second").read_bytes() == blob.read_bytes()


def _established_to(port: int) -> int:
    out = subprocess.run(
        ["ss", "-tn", "state", "established", f"dport = :{port}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return max(0, len(out.strip().splitlines()) - 1)


def test_list_records_uses_propfind_and_skips_foreign_names(
    nginx_server: NginxDav, http_url: str
) -> None:
    remote = open_remote(http_url, writable=True)
    assert list(remote.list_records()) == []  # no ac/ folder yet
    sigs = sorted(hashlib.sha256(b"%d" % i).hexdigest() for i in range(5))
    for i, sig in enumerate(sigs):
        assert remote.put_record(sig, b"x" * (10 + i))
    # Things a person might leave in the folder are not entries.
    ac = _data_dir(nginx_server, http_url) / "ac"
    (ac / "README").write_text("hello")
    (ac / ("a" * 64)).mkdir()
    entries = list(remote.list_records())
    assert [e.signature for e in entries] == sigs
    assert [e.size for e in entries] == [10 + sigs.index(e.signature) for e in entries]
    assert all(e.modified and e.modified.endswith("Z") for e in entries)
    assert "PROPFIND" in nginx_server.access_log.read_text()
