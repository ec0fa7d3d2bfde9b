"""Remotes tell the truth: refused uploads are named and fail ``cache push``, a corrupt local
blob is never uploaded, a stalled remote costs one timeout and one warning, and bad remote
settings or ``--remote`` URLs are refused with the file and line (real nginx, radosgw and a
socket that never answers)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from buildprint.errors import InputError
from buildprint.project.settings import ProjectSettings, load_settings
from buildprint.store import open_remote
from buildprint.store.cache import RemoteCache
from buildprint.store.http import HttpRemote
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord
from buildprint.store.remote import (
    RemoteTimeout,
    RemoteTimeouts,
    UploadIntegrityError,
    check_remote_url,
)
from buildprint.store.s3 import S3Remote
from buildprint.store.signing import generate_key, load_signing_key
from tests.support.cli import CliRun, PackageSpec, copy_project, run_cli, write_project
from tests.support.servers.nginx import NginxDav
from tests.support.servers.stall import StallServer, start_stall_server

RecordFactory = Callable[..., ActionRecord]

#: Warnings are wrapped to the terminal: wide enough that each is one line.
WIDE = {"COLUMNS": "250"}

#: A valid key of nobody (32 random-looking bytes), and a 31-byte one.
GOOD_KEY = "ed25519:" + base64.b64encode(bytes(range(32))).decode()
SHORT_KEY = "ed25519:" + base64.b64encode(bytes(31)).decode()


@pytest.fixture
def stall() -> Iterator[StallServer]:
    server = start_stall_server()
    yield server
    server.stop()


def _readonly_url(nginx: NginxDav) -> str:
    """A fresh base under nginx's ``/readonly/``: reads work, every write gets 401."""
    return f"{nginx.url}/readonly/{uuid.uuid4().hex}"


def _on_server(nginx: NginxDav, url: str) -> Path:
    """The folder nginx keeps ``url``'s objects in."""
    return nginx.data / url.removeprefix(nginx.url + "/")


def _store_project(
    root: Path, remotes: str, make_record: RecordFactory, count: int
) -> list[ActionRecord]:
    """A project with ``remotes`` settings and ``count`` records (real blobs) in its store."""
    root.mkdir(parents=True)
    (root / "buildprint.toml").write_text(remotes, encoding="utf-8")
    store = LocalStore(root / ".buildprint")
    try:
        # make_record stores the blobs only: the records go in as a build would put them.
        records = [make_record(store, (3_000, 2_500_000), name=f"pkg{i}") for i in range(count)]
        store.put_records(records)
        return records
    finally:
        store.close()


def _corrupt(path: Path) -> None:
    path.chmod(path.stat().st_mode | stat.S_IWUSR)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


# -- push: every refusal named, exit 1 unless everything landed ------------------------------


def test_push_to_a_server_refusing_writes_names_each_refusal_and_exits_1(
    tmp_path: Path, nginx_server: NginxDav, make_record: RecordFactory
) -> None:
    url = _readonly_url(nginx_server)
    project = tmp_path / "project"
    records = _store_project(project, f'[[remote]]\nurl = "{url}"\nwrite = true\n', make_record, 2)

    done = run_cli(project, "cache", "push", env=WIDE)
    assert done.code == 1, done.stdout + done.stderr
    refused = [line for line in done.stderr.splitlines() if line.startswith("refused: ")]
    # Every blob of every record is named, with the remote and the server's answer.
    assert len(refused) == 4, done.stderr
    for record in records:
        for artifact in record.artifacts:
            (line,) = [r for r in refused if f"blob {artifact.sha256}" in r]
            assert f"record {record.signature} ({record.name} 1.0)" in line
            assert f"not pushed to {url}" in line and "401" in line
    assert "pushed 0 of 2 record(s); 4 upload(s) refused" in done.stdout
    # The warning says it once for the remote, not once per upload.
    assert done.stderr.count("refused an upload") == 1
    # Nothing claimed, nothing stored.
    assert not _on_server(nginx_server, url).exists()

    as_json = run_cli(project, "cache", "push", "--json")
    assert as_json.code == 1
    report = as_json.json()
    assert report["landed"] == 0 and report["records"] == 2
    assert {r["blob"] for r in report["refused"]} == {
        a.sha256 for r in records for a in r.artifacts
    }
    assert all(r["remote"] == url and "401" in r["reason"] for r in report["refused"])


def test_push_exits_0_when_every_record_landed_or_was_there(
    tmp_path: Path, http_url: str, nginx_server: NginxDav, make_record: RecordFactory
) -> None:
    project = tmp_path / "project"
    records = _store_project(
        project, f'[[remote]]\nurl = "{http_url}"\nwrite = true\n', make_record, 2
    )
    first = run_cli(project, "cache", "push")
    assert first.code == 0, first.stderr
    assert f"{http_url}: 2 created, 0 already there" in first.stdout
    assert "pushed 2 of 2 record(s)" in first.stdout and "refused" not in first.stderr
    for record in records:
        assert (_on_server(nginx_server, http_url) / "ac" / record.signature).is_file()
    again = run_cli(project, "cache", "push")
    assert again.code == 0, again.stderr
    assert f"{http_url}: 0 created, 2 already there" in again.stdout


def test_push_without_a_writable_remote_is_bad_usage(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "buildprint.toml").write_text('[[remote]]\nurl = "http://127.0.0.1:9/c"\n')
    done = run_cli(project, "cache", "push")
    assert done.code == 2 and "no writable remote" in done.stderr
    assert "pushed" not in done.stdout


# -- a corrupt local blob is never uploaded ---------------------------------------------------


def _push_with_one_corrupt_blob(
    project: Path, url: str, make_record: RecordFactory, env: dict[str, str] | None = None
) -> tuple[CliRun, list[ActionRecord], str]:
    records = _store_project(project, f'[[remote]]\nurl = "{url}"\nwrite = true\n', make_record, 2)
    bad = records[0].artifacts[1].sha256  # the 2.5 MB one: several pieces on the wire
    store = LocalStore(project / ".buildprint")
    path = store.blob_path(bad)
    store.close()
    assert path is not None
    _corrupt(path)
    return run_cli(project, "cache", "push", env=env), records, bad


def test_a_corrupt_local_blob_is_not_pushed_over_http(
    tmp_path: Path, http_url: str, nginx_server: NginxDav, make_record: RecordFactory
) -> None:
    done, records, bad = _push_with_one_corrupt_blob(tmp_path / "p", http_url, make_record)
    assert done.code == 1, done.stdout + done.stderr
    assert f"local blob {bad} hashes to" in done.stderr and "corrupt" in done.stderr
    assert "pushed 1 of 2 record(s)" in done.stdout
    served = _on_server(nginx_server, http_url)
    assert not (served / "cas" / bad).exists()  # not even a partial body
    assert not (served / "ac" / records[0].signature).exists()
    assert (served / "ac" / records[1].signature).is_file()  # the sound record landed


def test_a_corrupt_local_blob_is_not_pushed_to_s3(
    tmp_path: Path, s3_env: str, make_record: RecordFactory
) -> None:
    done, records, bad = _push_with_one_corrupt_blob(tmp_path / "p", s3_env, make_record)
    assert done.code == 1, done.stdout + done.stderr
    assert f"local blob {bad} hashes to" in done.stderr
    remote = open_remote(s3_env, writable=False)
    try:
        assert not remote.has_blob(bad)
        assert remote.get_record(records[0].signature) is None
        assert remote.get_record(records[1].signature) is not None
    finally:
        remote.close()


def test_http_upload_of_a_file_changed_under_it_never_completes(
    tmp_path: Path, http_url: str, nginx_server: NginxDav
) -> None:
    # Below the cache: the blob is hashed while it streams and its last piece held back.
    data = os.urandom(3 << 20)
    blob = tmp_path / "blob"
    blob.write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    _corrupt(blob)
    remote = HttpRemote(http_url, writable=True)
    try:
        with pytest.raises(UploadIntegrityError, match="corrupt, not uploaded"):
            remote.put_blob(sha, blob)
        assert not remote.has_blob(sha)
        blob.write_bytes(data)
        remote.put_blob(sha, blob)  # the sound bytes go up on the same client
        assert remote.has_blob(sha)
    finally:
        remote.close()
    assert (_on_server(nginx_server, http_url) / "cas" / sha).read_bytes() == data


# -- a stalled remote: one bounded wait, one warning, then not tried again --------------------


def test_a_stall_is_a_remote_timeout_on_every_path(
    stall: StallServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = RemoteTimeouts(connect=1, read=0.5)
    http = HttpRemote(f"{stall.url}/cache", writable=True, timeouts=quick)
    monkeypatch.setenv("BUILDPRINT_S3_ENDPOINT", stall.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "stall-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "stall-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = S3Remote("s3://bucket/prefix", writable=True, timeouts=quick)
    sha = "0" * 64
    calls: list[tuple[str, Callable[[], object], float]] = [
        ("http GET", lambda: http.get_record(sha), 0.5),
        ("http HEAD", lambda: http.has_blob(sha), 0.5),
        ("s3 GET", lambda: s3.get_record(sha), 0.5),
        ("s3 HEAD", lambda: s3.has_blob(sha), 1.0),  # boto3: at most two attempts
    ]
    try:
        for what, call, limit in calls:
            started = time.monotonic()
            with pytest.raises(RemoteTimeout) as caught:
                call()
            took = time.monotonic() - started
            assert limit * 0.8 <= took < limit + 3, (what, took)
            assert "did not answer" in str(caught.value) and "0.5 s" in str(caught.value)
            assert "stall-test-secret" not in str(caught.value)
    finally:
        http.close()
        s3.close()


def test_a_stalled_remote_is_reported_once_and_not_tried_again(
    tmp_path: Path, stall: StallServer, http_url: str, make_record: RecordFactory
) -> None:
    generate_key(tmp_path / "publisher")
    key = load_signing_key(tmp_path / "publisher")
    assert key is not None
    publisher = RemoteCache(
        [open_remote(http_url, writable=True)], LocalStore(tmp_path / "publisher"), [], key
    )
    records = [make_record(publisher.local, (1000,), name=f"pkg{i}") for i in range(4)]
    for record in records:
        assert publisher.push(record) == {http_url: True}
    stalled = open_remote(
        f"{stall.url}/cache", writable=False, timeouts=RemoteTimeouts(connect=1, read=1)
    )
    cache = RemoteCache(
        [stalled, open_remote(http_url, writable=False)],
        LocalStore(tmp_path / "consumer"),
        [key.public_id],
        None,
    )
    started = time.monotonic()
    found = cache.lookup_many([r.signature for r in records[:2]])
    assert time.monotonic() - started < 5
    assert set(found) == {r.signature for r in records[:2]}  # from the next remote
    connections = stall.accepted
    assert connections >= 1
    again = cache.lookup_many([r.signature for r in records[2:]])
    assert set(again) == {r.signature for r in records[2:]}
    assert stall.accepted == connections  # not tried again in this run
    stalls = [p for p in cache.problems if "did not answer" in p]
    assert len(stalls) == 1 and "continuing without it" in stalls[0]
    for remote in cache.remotes + publisher.remotes:
        remote.close()


ALPHA = PackageSpec("alpha")
BETA = PackageSpec("beta")


def test_plan_with_a_stalled_remote_finishes_fast_and_warns_once(
    tmp_path: Path, stall: StallServer, backend_wheels: Path
) -> None:
    project = write_project(tmp_path / "project", backend_wheels, [ALPHA, BETA])
    assert run_cli(project, "lock").code == 0  # locking is not what this test times
    with (project / "buildprint.toml").open("a") as toml:
        toml.write(f'[[remote]]\nurl = "{stall.url}/cache"\ntimeout = 1\n')

    started = time.monotonic()
    done = run_cli(project, "plan", "--json", env=WIDE, timeout=120)
    took = time.monotonic() - started
    assert done.code == 0, done.stderr
    assert {n: e["action"] for n, e in done.packages().items()} == {
        "alpha": "build",
        "beta": "build",
    }
    assert took < 15, f"plan took {took:.1f} s"  # was 60 s per lookup
    assert stall.accepted >= 1  # the remote was asked, and gave up on
    assert done.stderr.count("did not answer") == 1, done.stderr
    assert "within 1 s" in done.stderr and "continuing without it" in done.stderr


# -- build: a refusing remote is a warning, once; the build succeeds ---------------------------


@pytest.fixture(scope="module")
def built(
    tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path, nginx_server: NginxDav
) -> tuple[Path, CliRun, str]:
    """A project built with a writable remote that refuses every upload."""
    url = _readonly_url(nginx_server)
    root = write_project(
        tmp_path_factory.mktemp("truth") / "project",
        backend_wheels,
        [ALPHA, BETA],
        project_toml=f'[[remote]]\nurl = "{url}"\nwrite = true\n',
    )
    return root, run_cli(root, "build", "--json", env=WIDE), url


def test_build_with_a_refusing_remote_warns_once_and_succeeds(
    built: tuple[Path, CliRun, str], nginx_server: NginxDav
) -> None:
    _root, done, url = built
    assert done.code == 0, done.stderr
    assert {n: e["action"] for n, e in done.packages().items()} == {
        "alpha": "built",
        "beta": "built",
    }
    assert done.stderr.count("refused an upload") == 1, done.stderr
    assert f"remote {url} refused an upload" in done.stderr and "401" in done.stderr
    assert not _on_server(nginx_server, url).exists()


# -- bad settings and --remote URLs: exit 2, file and line ------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('trusted-keys = ["ssh-ed25519 AAAA"]', "must start with 'ed25519:'"),
        ('trusted-keys = ["ed25519:not base64!"]', "is not a base64 32-byte Ed25519 key"),
        (f'trusted-keys = ["{GOOD_KEY}", "{SHORT_KEY}"]', "is not a base64 32-byte"),
        ('url = "ftp://cache.example/c"', "scheme must be http, https or s3"),
        ('url = "gopher://x"', "scheme must be http, https or s3"),
        ('url = "http:///cache"', "names no host"),
        ('url = "s3:///prefix"', "names no bucket"),
        ('url = "http://u:hunter2@cache.example:99999/c"', "malformed"),
        ("timeout = 0", "greater than 0"),
        ("read-timeout = -1", "greater than 0"),
        ("connect-timeout = 1e9", "less than or equal to 600"),
    ],
)
def test_bad_remote_settings_name_buildprint_toml_and_the_line(
    tmp_path: Path, line: str, expected: str
) -> None:
    key = line.split(" =", 1)[0]
    url = "" if key == "url" else 'url = "https://cache.example/c"\n'
    (tmp_path / "buildprint.toml").write_text(
        "[project]\n"
        'requirements = "requirements.txt"\n'
        "\n"
        "[[remote]]\n"
        'url = "s3://first/prefix"\n'
        "\n"
        "[[remote]]\n"
        f"{url}"
        f"{line}\n"
    )
    wanted_line = 9 if url else 8
    done = run_cli(tmp_path, "plan")
    assert done.code == 2, done.stdout + done.stderr
    assert f"buildprint.toml:{wanted_line}: " in done.stderr, done.stderr
    assert expected in done.stderr
    assert "hunter2" not in done.stderr
    assert "Traceback" not in done.stderr


def test_timeout_settings() -> None:
    assert RemoteTimeouts() == RemoteTimeouts(connect=5, read=10)
    assert RemoteTimeouts.of(2) == RemoteTimeouts(connect=2, read=2)
    assert RemoteTimeouts.of(2, read=30) == RemoteTimeouts(connect=2, read=30)
    assert RemoteTimeouts.of(None, connect=1) == RemoteTimeouts(connect=1, read=10)


def test_timeout_keys_are_read_from_buildprint_toml(tmp_path: Path) -> None:
    path = tmp_path / "buildprint.toml"
    path.write_text(
        '[[remote]]\nurl = "http://a.example/c"\ntimeout = 2\nread-timeout = 7\n'
        f'trusted-keys = ["{GOOD_KEY}"]\n'
        '[[remote]]\nurl = "s3://bucket"\nconnect-timeout = 0.5\n'
    )
    first, second = load_settings(path, ProjectSettings).remote
    assert (first.timeout, first.connect_timeout, first.read_timeout) == (2, None, 7)
    assert RemoteTimeouts.of(first.timeout, first.connect_timeout, first.read_timeout) == (
        RemoteTimeouts(connect=2, read=7)
    )
    assert RemoteTimeouts.of(None, second.connect_timeout) == RemoteTimeouts(0.5, 10)


def test_one_url_check_for_settings_and_command_line() -> None:
    for good in ("http://h/c", "https://u:p@h:8443/c", "s3://bucket/p", "http://[::1]:80/c"):
        assert check_remote_url(good) == good
    for bad in ("gopher://x", "http:///c", "cache.example/c", "http://h/c?x=1", "s3://b:1/p"):
        with pytest.raises(InputError):
            check_remote_url(bad)
    with pytest.raises(InputError) as caught:
        check_remote_url("ftp://user:s3cret@h/c")
    assert "s3cret" not in str(caught.value)


def test_a_bad_remote_option_exits_2_before_the_plan_snapshot_answers(
    built: tuple[Path, CliRun, str], tmp_path: Path
) -> None:
    root, done, _url = built
    assert done.code == 0, done.stderr
    project = copy_project(root, tmp_path / "project")
    time.sleep(0.06)  # files just copied are "racily clean" for a plan started at once
    assert run_cli(project, "plan").code == 0  # keeps the snapshot
    kept = run_cli(project, "plan", "--json")
    assert kept.code == 0 and kept.json()["snapshot"].startswith("used"), kept.stdout
    for bad, expected in [
        ("gopher://x", "scheme must be http, https or s3"),
        ("http:///cache", "names no host"),
    ]:
        refused = run_cli(project, "plan", "--remote", bad)
        assert refused.code == 2, refused.stdout + refused.stderr
        assert "--remote" in refused.stderr and expected in refused.stderr
        assert refused.stdout == ""
    listed = run_cli(project, "cache", "ls", "--remote", "ftp://cache.example/c")
    assert listed.code == 2 and "scheme must be" in listed.stderr
    # Still answered by the snapshot afterwards: the refusals changed nothing.
    assert json.loads(run_cli(project, "plan", "--json").stdout)["snapshot"].startswith("used")
