"""RemoteCache end to end on real servers: push, verified lookup and fetch, and every refusal."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from buildprint.signature.canonical import canonical_bytes
from buildprint.store import open_remote
from buildprint.store.cache import RemoteCache
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord
from buildprint.store.signing import generate_key, load_signing_key
from tests.support.servers._proc import free_port
from tests.support.servers.nginx import NginxDav
from tests.support.servers.radosgw import RadosGateway

pytestmark = pytest.mark.servers

RecordFactory = Callable[..., ActionRecord]


def _cache(
    store: Path,
    url: str,
    *,
    trusted: list[str] | None = None,
    own_key: bool = True,
    writable: bool = True,
) -> RemoteCache:
    key = None
    if own_key:
        generate_key(store)
        key = load_signing_key(store)
    return RemoteCache([open_remote(url, writable=writable)], LocalStore(store), trusted or [], key)


def _publisher(
    tmp_path: Path, url: str, make_record: RecordFactory, sizes: tuple[int, ...] = (50_000, 120_000)
) -> tuple[RemoteCache, ActionRecord, str]:
    cache = _cache(tmp_path / "publisher", url)
    record = make_record(cache.local, sizes)
    assert cache.push(record) == {cache.remotes[0].url: True}
    assert cache.signing_key is not None
    return cache, record, cache.signing_key.public_id


def test_push_then_lookup_and_fetch_on_another_machine(
    tmp_path: Path, http_url: str, make_record: RecordFactory
) -> None:
    publisher, record, public = _publisher(tmp_path, http_url, make_record)
    consumer = _cache(tmp_path / "consumer", http_url, trusted=[public], writable=False)
    found = consumer.lookup(record.signature)
    assert found == record
    consumer.fetch(found)
    assert consumer.local.get_record(record.signature) == record
    for artifact in record.artifacts:
        path = consumer.local.blob_path(artifact.sha256)
        assert path is not None
        assert path.read_bytes() == publisher.local.blob_path(artifact.sha256).read_bytes()  # type: ignore[union-attr]
    assert consumer.problems == []
    # Publishing again keeps the first entry.
    assert publisher.push(record) == {publisher.remotes[0].url: False}


def test_push_and_fetch_over_s3(tmp_path: Path, s3_env: str, make_record: RecordFactory) -> None:
    _, record, public = _publisher(tmp_path, s3_env, make_record)
    consumer = _cache(tmp_path / "consumer", s3_env, trusted=[public])
    found = consumer.lookup(record.signature)
    assert found is not None
    assert consumer.fetch_many([found]) == [record]
    assert consumer.local.get_record(record.signature) == record


def test_record_signed_by_unknown_key_is_ignored_with_a_warning(
    tmp_path: Path, http_url: str, make_record: RecordFactory
) -> None:
    _, record, _public = _publisher(tmp_path, http_url, make_record)
    consumer = _cache(tmp_path / "consumer", http_url)  # trusts only its own key
    assert consumer.lookup(record.signature) is None
    assert len(consumer.problems) == 1 and "unknown key" in consumer.problems[0]


def _ac_file(server: NginxDav, url: str, signature: str) -> Path:
    return server.data / urlsplit(url).path.strip("/") / "ac" / signature


def test_unsigned_record_is_ignored(
    tmp_path: Path, nginx_server: NginxDav, http_url: str, make_record: RecordFactory
) -> None:
    _, record, public = _publisher(tmp_path, http_url, make_record)
    ac = _ac_file(nginx_server, http_url, record.signature)
    envelope = json.loads(ac.read_bytes())
    envelope["signatures"] = []
    ac.write_bytes(canonical_bytes(envelope))
    consumer = _cache(tmp_path / "consumer", http_url, trusted=[public])
    assert consumer.lookup(record.signature) is None
    assert "unsigned" in consumer.problems[0]


def test_bit_flipped_record_is_ignored(
    tmp_path: Path, nginx_server: NginxDav, http_url: str, make_record: RecordFactory
) -> None:
    _, record, public = _publisher(tmp_path, http_url, make_record)
    ac = _ac_file(nginx_server, http_url, record.signature)
    data = bytearray(ac.read_bytes())
    at = data.index(b'"version":"1.0"') + len(b'"version":"')
    data[at] ^= 0x02  # "1.0" -> "3.0": still valid JSON, no longer what was signed
    ac.write_bytes(bytes(data))
    consumer = _cache(tmp_path / "consumer", http_url, trusted=[public])
    assert consumer.lookup(record.signature) is None
    assert "bad signature" in consumer.problems[0]


def test_record_copied_under_another_signature_is_ignored(
    tmp_path: Path, nginx_server: NginxDav, http_url: str, make_record: RecordFactory
) -> None:
    _, record, public = _publisher(tmp_path, http_url, make_record)
    other = "e" * 64
    shutil.copy(
        _ac_file(nginx_server, http_url, record.signature), _ac_file(nginx_server, http_url, other)
    )
    consumer = _cache(tmp_path / "consumer", http_url, trusted=[public])
    assert consumer.lookup(other) is None
    assert f"it is for {record.signature}" in consumer.problems[0]


def test_tampered_blob_is_not_used(
    tmp_path: Path, nginx_server: NginxDav, http_url: str, make_record: RecordFactory
) -> None:
    _, record, public = _publisher(tmp_path, http_url, make_record)
    victim = record.artifacts[1].sha256
    cas = nginx_server.data / urlsplit(http_url).path.strip("/") / "cas" / victim
    cas.write_bytes(b"\0" + cas.read_bytes()[1:])
    consumer = _cache(tmp_path / "consumer", http_url, trusted=[public])
    found = consumer.lookup(record.signature)
    assert found is not None
    assert consumer.fetch_many([found]) == []
    assert consumer.local.get_record(record.signature) is None
    assert consumer.local.blob_path(victim) is None
    assert any("tampered" in p for p in consumer.problems)
    with pytest.raises(Exception, match="tampered"):
        consumer.fetch(found)
    assert consumer.local.get_record(record.signature) is None


def test_remote_down_is_reported_once_and_next_remote_used(
    tmp_path: Path, http_url: str, make_record: RecordFactory
) -> None:
    records = [_publisher(tmp_path / str(i), http_url, make_record, (1000,)) for i in range(3)]
    down = open_remote(f"http://127.0.0.1:{free_port()}/cache", writable=True)
    store = tmp_path / "consumer"
    cache = RemoteCache(
        [down, open_remote(http_url, writable=False)],
        LocalStore(store),
        [public for _, _, public in records],
        None,
    )
    for _, record, _ in records:
        found = cache.lookup(record.signature)
        assert found == record
        cache.fetch(found)
    assert len(cache.problems) == 1 and "unreachable" in cache.problems[0]


def test_fetch_many_downloads_concurrently_and_stores_all(
    tmp_path: Path, http_url: str, make_record: RecordFactory
) -> None:
    publisher = _cache(tmp_path / "publisher", http_url)
    records = [make_record(publisher.local, (20_000, 30_000), name=f"pkg{i}") for i in range(10)]
    for record in records:
        publisher.push(record)
    assert publisher.signing_key is not None
    consumer = _cache(tmp_path / "consumer", http_url, trusted=[publisher.signing_key.public_id])
    found = [consumer.lookup(r.signature) for r in records]
    assert all(found)
    assert consumer.fetch_many([f for f in found if f], jobs=8) == records
    assert {r.signature for r in consumer.local.records()} == {r.signature for r in records}


def test_push_without_signing_key_publishes_nothing(
    tmp_path: Path, nginx_server: NginxDav, http_url: str, make_record: RecordFactory
) -> None:
    cache = _cache(tmp_path / "s", http_url, own_key=False)
    record = make_record(cache.local)
    assert cache.push(record) == {}
    assert "no signing key" in cache.problems[0]
    assert not _ac_file(nginx_server, http_url, record.signature).exists()


def test_secrets_never_appear_in_problems_logs_or_records(
    tmp_path: Path,
    nginx_server: NginxDav,
    s3_env: str,
    radosgw_server: RadosGateway,
    make_record: RecordFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    host = urlsplit(nginx_server.url).netloc
    basic = f"http://{nginx_server.user}:{nginx_server.password}@{host}/basic/canary"
    wrong = f"http://{nginx_server.user}:wrong-CANARY-pw@{host}/basic/canary"
    down = f"http://u:down-CANARY-pw@127.0.0.1:{free_port()}/x"
    store = tmp_path / "s"
    generate_key(store)
    key = load_signing_key(store)
    remotes = [open_remote(u, writable=True) for u in (down, wrong, basic, s3_env)]
    cache = RemoteCache(remotes, LocalStore(store), [], key)
    record = make_record(cache.local)
    cache.push(record)
    cache.lookup(record.signature)
    monkeypatch.setenv("BUILDPRINT_REMOTE_TOKEN", nginx_server.token)
    bearer = RemoteCache(
        [open_remote(f"{nginx_server.url}/basic/x", writable=True)], LocalStore(store), [], key
    )
    bearer.push(record)  # the token is wrong for /basic/: refused
    texts = [
        *cache.problems,
        *bearer.problems,
        caplog.text,
        *(repr(r) for r in remotes),
        *(p.read_text() for p in (store / "ac").iterdir()),
    ]
    assert cache.problems and bearer.problems  # there was something to leak
    secrets = [
        nginx_server.password,
        nginx_server.token,
        radosgw_server.secret_key,
        "wrong-CANARY-pw",
        "down-CANARY-pw",
    ]
    for secret in secrets:
        for text in texts:
            assert secret not in text


def test_lookup_many_and_fetch_many_store_verified_records_and_skip_bad_ones(
    tmp_path: Path, nginx_server: NginxDav, http_url: str, make_record: RecordFactory
) -> None:
    publisher = _cache(tmp_path / "publisher", http_url)
    records = [make_record(publisher.local, (20_000, 7_000), name=f"pkg{i}") for i in range(12)]
    for record in records:
        publisher.push(record)
    assert publisher.signing_key is not None
    # One record's blob is deleted on the server, another's record is signed by a stranger.
    broken = records[3]
    base = nginx_server.data / urlsplit(http_url).path.strip("/")
    (base / "cas" / broken.artifacts[0].sha256).unlink()
    stranger = _cache(tmp_path / "stranger", http_url)
    foreign = make_record(stranger.local, (500,), name="foreign")
    stranger.push(foreign)

    consumer = _cache(tmp_path / "consumer", http_url, trusted=[publisher.signing_key.public_id])
    wanted = [r.signature for r in records] + [foreign.signature]
    found = consumer.lookup_many(wanted, jobs=6)
    assert set(found) == {r.signature for r in records}  # the stranger's record is refused
    assert any("foreign" not in p and foreign.signature in p for p in consumer.problems)

    fetched = consumer.fetch_many([found[r.signature] for r in records], jobs=6)
    assert fetched == [r for r in records if r is not broken]
    assert consumer.local.get_record(broken.signature) is None
    assert any(broken.signature in p and "not fetched" in p for p in consumer.problems)
    for record in fetched:
        for artifact in record.artifacts:
            path = consumer.local.blob_path(artifact.sha256)
            assert path is not None and path.stat().st_size == artifact.size
    # Every blob rehashes to its name, nothing is left in tmp/, and the index knows them all.
    assert consumer.local.verify() == []
    assert [r.signature for r in consumer.local.find("pkg5")] == [records[5].signature]
    # A second fetch of what is already local downloads nothing and stores the same records.
    log = nginx_server.access_log.read_text().count("GET ")
    assert consumer.fetch_many(fetched) == fetched
    assert nginx_server.access_log.read_text().count("GET ") == log
