"""S3 remote against a real Ceph radosgw: layout, IfNoneMatch create, integrity, credentials."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest

from buildprint.store import open_remote
from buildprint.store.remote import (
    RemoteAccessDenied,
    RemoteIntegrityError,
    RemoteMissing,
    RemoteUnavailable,
)
from buildprint.store.s3 import S3Remote
from tests.support.servers._proc import free_port
from tests.support.servers.radosgw import RadosGateway

pytestmark = [pytest.mark.servers, pytest.mark.slow]

SIG = "6" * 64


def _raw(gw: RadosGateway) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=gw.endpoint,
        aws_access_key_id=gw.access_key,
        aws_secret_access_key=gw.secret_key,
        region_name="us-east-1",
    )


def _key(url: str, rest: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.netloc, f"{parts.path.strip('/')}/{rest}"


def test_record_and_blob_round_trip_in_bazel_layout(
    radosgw_server: RadosGateway, s3_env: str, tmp_path: Path
) -> None:
    remote = open_remote(s3_env, writable=True)
    assert remote.get_record(SIG) is None
    assert remote.put_record(SIG, b"envelope-1") is True
    assert remote.get_record(SIG) == b"envelope-1"
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(300_000))
    sha = hashlib.sha256(blob.read_bytes()).hexdigest()
    assert not remote.has_blob(sha)
    remote.put_blob(sha, blob)
    remote.put_blob(sha, blob)  # present: skipped
    assert remote.has_blob(sha)
    remote.get_blob(sha, tmp_path / "copy")
    assert (tmp_path / "copy").read_bytes() == blob.read_bytes()
    bucket, key = _key(s3_env, f"cas/{sha}")
    assert (
        _raw(radosgw_server).get_object(Bucket=bucket, Key=key)["Body"].read() == blob.read_bytes()
    )
    bucket, key = _key(s3_env, f"ac/{SIG}")
    assert _raw(radosgw_server).get_object(Bucket=bucket, Key=key)["Body"].read() == b"envelope-1"


def test_second_put_record_is_refused_and_content_kept(s3_env: str) -> None:
    remote = open_remote(s3_env, writable=True)
    assert remote.put_record(SIG, b"first") is True
    assert remote.put_record(SIG, b"second") is False
    assert remote.get_record(SIG) == b"first"


def test_concurrent_publishers_leave_one_consistent_entry(s3_env: str) -> None:
    remote = open_remote(s3_env, writable=True)
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


def test_concurrent_processes_publish_one_entry(s3_env: str) -> None:
    code = (
        "import sys; from buildprint.store import open_remote;"
        "r = open_remote(sys.argv[1], writable=True);"
        "print(r.put_record('" + SIG + "', sys.argv[2].encode() * 5000))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, s3_env, f"p{i}"], stdout=subprocess.PIPE, text=True
        )
        for i in range(3)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert sorted(outputs) == ["False", "False", "True"]
    winner = outputs.index("True")
    assert open_remote(s3_env, writable=False).get_record(SIG) == f"p{winner}".encode() * 5000


def test_tampered_blob_is_detected_and_nothing_left(
    radosgw_server: RadosGateway, s3_env: str, tmp_path: Path
) -> None:
    remote = open_remote(s3_env, writable=True)
    data = b"genuine wheel bytes" * 1000
    sha = hashlib.sha256(data).hexdigest()
    bucket, key = _key(s3_env, f"cas/{sha}")
    _raw(radosgw_server).put_object(Bucket=bucket, Key=key, Body=b"evil" + data[4:])
    out = tmp_path / "out"
    with pytest.raises(RemoteIntegrityError):
        remote.get_blob(sha, out / "blob")
    assert list(out.iterdir()) == []


def test_unfinished_multipart_upload_is_invisible(
    radosgw_server: RadosGateway, s3_env: str, tmp_path: Path
) -> None:
    # What a killed multipart upload leaves: parts, but no object at the final name.
    sha = "8" * 64
    bucket, key = _key(s3_env, f"cas/{sha}")
    raw = _raw(radosgw_server)
    upload = raw.create_multipart_upload(Bucket=bucket, Key=key)
    raw.upload_part(
        Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=os.urandom(5 << 20)
    )
    remote = open_remote(s3_env, writable=False)
    assert remote.has_blob(sha) is False
    with pytest.raises(RemoteMissing):
        remote.get_blob(sha, tmp_path / "blob")
    assert not (tmp_path / "blob").exists()


def test_closed_port_raises_remote_unavailable(
    s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUILDPRINT_S3_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    remote = open_remote(s3_env, writable=True)
    with pytest.raises(RemoteUnavailable):
        remote.get_record(SIG)


def test_wrong_secret_is_access_denied_and_never_echoed(
    radosgw_server: RadosGateway, s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = open_remote(s3_env, writable=True)
    assert radosgw_server.secret_key not in repr(remote)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-CANARY")
    wrong = open_remote(s3_env, writable=True)
    with pytest.raises(RemoteAccessDenied) as info:
        wrong.put_record(SIG, b"x")
    assert "CANARY" not in str(info.value)
    assert radosgw_server.secret_key not in str(info.value)


def test_gets_with_a_wrong_secret_are_refused_without_echoing_the_signed_url(
    s3_env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    open_remote(s3_env, writable=True).put_record(SIG, b"envelope")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-CANARY")
    wrong = open_remote(s3_env, writable=False)
    for get in (lambda: wrong.get_record(SIG), lambda: wrong.get_blob("6" * 64, tmp_path / "b")):
        with pytest.raises(RemoteAccessDenied) as info:
            get()
        # A presigned URL carries the access key id and a signature: neither is shown.
        assert "X-Amz" not in str(info.value) and "CANARY" not in str(info.value)
        assert os.environ["AWS_ACCESS_KEY_ID"] not in str(info.value)


def test_missing_bucket_is_reported_not_taken_for_absent_entries(s3_env: str) -> None:
    remote = open_remote("s3://bp-no-such-bucket/cache", writable=False)
    with pytest.raises(RemoteUnavailable, match="NoSuchBucket"):
        remote.get_record(SIG)


def test_a_proxy_configured_for_the_endpoint_is_honoured(
    s3_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    open_remote(s3_env, writable=True).put_record(SIG, b"envelope")
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    # A proxy that is down: GETs that went around it (direct) would still succeed.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(RemoteUnavailable):
        open_remote(s3_env, writable=False).get_record(SIG)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert open_remote(s3_env, writable=False).get_record(SIG) == b"envelope"


def test_list_records_pages_through_the_prefix(s3_env: str) -> None:
    remote = S3Remote(s3_env, writable=True)
    remote.list_page = 3  # seven entries: three pages
    assert list(remote.list_records()) == []
    sigs = sorted(hashlib.sha256(b"%d" % i).hexdigest() for i in range(7))
    for sig in sigs:
        assert remote.put_record(sig, b"envelope")
    # Another prefix in the same bucket is not listed.
    open_remote(s3_env + "-other", writable=True).put_record("7" * 64, b"elsewhere")
    entries = list(remote.list_records())
    assert [e.signature for e in entries] == sigs
    assert {e.size for e in entries} == {len(b"envelope")}
    assert all(e.modified and e.modified.endswith("Z") for e in entries)
