"""Damaged store entries on real files: found when bytes leave the store, quarantined,
repaired by the next put, reported by verify and removed by gc — never served."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from buildprint import fsio
from buildprint.builder.environment import EnvironmentPool
from buildprint.builder.wheelhouse import Wheelhouse
from buildprint.errors import CorruptBlob, StoreError
from buildprint.signature.canonical import digest_bytes
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord, Artifact

WHEEL = b"PK\x03\x04 pretend wheel bytes " * 200


def _sig(text: str) -> str:
    return digest_bytes(text.encode())


def _record(store: LocalStore, key: str, data: bytes = WHEEL, name: str = "alpha") -> ActionRecord:
    digest = store.put_blob_bytes(data)
    record = ActionRecord(
        signature=_sig(key),
        name=name,
        version="1.0",
        manifest={"components": {"source": {"digest": _sig("src" + key), "value": None}}},
        artifacts=(Artifact(f"{name}-1.0-py3-none-any.whl", digest, len(data), _sig("c")),),
    )
    store.put_record(record)
    return record


def _blob(store: LocalStore, record: ActionRecord) -> Path:
    path = store.blob_path(record.artifacts[0].sha256)
    assert path is not None
    return path


def _flip(path: Path, at: int = 10) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path, size: int = 100) -> None:
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:size])


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


# -- bytes leaving the store -------------------------------------------------------------


def test_copy_blob_checks_while_copying_and_returns_the_digest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    record = _record(store, "a")
    dest = tmp_path / "out.whl"
    digest = record.artifacts[0].sha256
    assert store.copy_blob(digest, dest, size=len(WHEEL)) == digest
    assert dest.read_bytes() == WHEEL


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_damaged_blob_is_never_copied_out_and_is_quarantined(tmp_path: Path, damage: str) -> None:
    store = LocalStore(tmp_path / "store")
    record = _record(store, "a")
    blob = _blob(store, record)
    {"flip": _flip, "truncate": _truncate, "delete": Path.unlink}[damage](blob)
    dest = tmp_path / "out.whl"
    with pytest.raises(CorruptBlob) as caught:
        store.copy_blob(record.artifacts[0].sha256, dest, size=len(WHEEL))
    assert caught.value.digest == record.artifacts[0].sha256
    assert isinstance(caught.value, StoreError)
    assert not dest.exists()  # nothing half-copied or wrong is left for a caller
    assert not blob.exists()
    quarantine = store.root / "quarantine"
    quarantined = list(quarantine.iterdir()) if quarantine.exists() else []
    if damage == "delete":
        assert quarantined == []
    else:
        # Named for what it was (its digest) and when (ns since the epoch).
        (moved,) = quarantined
        digest, _, stamp = moved.name.partition(".")
        assert digest == record.artifacts[0].sha256
        assert abs(int(stamp) / 1e9 - time.time()) < 60


def test_wheelhouse_memo_records_the_bytes_written_not_the_record(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    record = _record(store, "a")
    artifact = record.artifacts[0]
    house = Wheelhouse(tmp_path / "wheelhouse")

    def copy(dest: Path) -> str:
        return store.copy_blob(artifact.sha256, dest, size=artifact.size)

    placed = house.place(artifact.filename, artifact.sha256, copy)
    house.flush()
    assert placed.read_bytes() == WHEEL
    memo = json.loads((house.root / "simple" / ".placed.json").read_text())
    assert memo[artifact.filename]["sha256"] == artifact.sha256
    page = (house.root / "simple" / "alpha" / "index.html").read_text()
    assert f"#sha256={artifact.sha256}" in page

    # A wheelhouse file damaged behind its back is replaced on the next place.
    _flip(placed)
    house = Wheelhouse(tmp_path / "wheelhouse")
    house.place(artifact.filename, artifact.sha256, copy)
    house.flush()
    assert placed.read_bytes() == WHEEL

    # Bytes that are not the wheel asked for never replace the file.
    (tmp_path / "other").write_bytes(b"another build's bytes")
    with pytest.raises(StoreError):
        house.add(tmp_path / "other", artifact.filename, _sig("other"))
    assert placed.read_bytes() == WHEEL


def test_wheelhouse_ignores_a_memo_written_by_an_older_release(tmp_path: Path) -> None:
    # Before, the memo held what the record claimed; a wheel then copied from a damaged blob
    # sits under a memo entry that matches its state. Such a memo must not be trusted.
    house = tmp_path / "wheelhouse"
    wheel = house / "alpha-1.0-py3-none-any.whl"
    house.mkdir()
    wheel.write_bytes(b"corrupt")
    old = {wheel.name: {"state": fsio.stat_key(wheel), "sha256": _sig("claimed")}}
    (house / "simple").mkdir()
    (house / "simple" / ".digests.json").write_text(json.dumps(old))
    written = []

    def write(dest: Path) -> str:
        written.append(dest)
        return fsio.copy_file_hashing(source, dest)

    source = tmp_path / "good.whl"
    source.write_bytes(WHEEL)
    Wheelhouse(house).place(wheel.name, fsio.copy_file_hashing(source, tmp_path / "x"), write)
    assert written and wheel.read_bytes() == WHEEL


def test_wheelhouse_writes_its_pages_once_per_flush(tmp_path: Path) -> None:
    house = Wheelhouse(tmp_path / "wheelhouse")
    source = tmp_path / "w.whl"
    for i in range(20):
        source.write_bytes(b"wheel %d" % i)
        sha = fsio.copy_file_hashing(source, tmp_path / "copy")
        house.add(source, f"pkg{i % 4}-1.{i}-py3-none-any.whl", sha)
    assert not (house.root / "simple" / "index.html").exists()  # nothing until flushed
    house.flush()
    listed = (house.root / "simple" / "index.html").read_text()
    assert all(f'"pkg{i}/"' in listed for i in range(4))
    assert (house.root / "simple" / "pkg1" / "index.html").read_text().count("<a ") == 5


# -- records and reads ---------------------------------------------------------------------


def test_truncated_blob_is_quarantined_on_read_with_one_warning_naming_package_and_blob(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(tmp_path / "store")
    record = _record(store, "a")
    blob = _blob(store, record)
    _truncate(blob)
    with caplog.at_level(logging.WARNING, logger="buildprint.store"):
        for _ in range(3):  # plan and build ask several times
            assert store.get_record(record.signature) is None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "alpha 1.0" in warnings[0] and record.artifacts[0].sha256 in warnings[0]
    assert "100 bytes, record says" in warnings[0] and "quarantine" in warnings[0]
    assert not blob.exists()
    # The package builds again: the put stores the blob, the record is whole again.
    store.put_blob_bytes(WHEEL)
    store.put_record(record)
    assert store.get_record(record.signature) == record


def test_a_record_with_a_wrong_size_does_not_get_a_good_blob_quarantined(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store")
    good = _record(store, "a")
    wrong = json.loads(store.record_path(good.signature).read_bytes())
    wrong["artifacts"][0]["size"] += 1
    store.record_path(good.signature).write_text(json.dumps(wrong))
    assert store.get_record(good.signature) is None
    assert _blob(store, good).exists()  # the blob hashes to its name: the record is wrong


def test_corrupt_record_json_and_index_do_not_crash_reads(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(tmp_path / "store")
    good = _record(store, "good")
    bad = _record(store, "bad")
    store.record_path(bad.signature).write_bytes(b'{"format": "buildprint-rec')
    with caplog.at_level(logging.WARNING, logger="buildprint.store"):
        assert store.get_record(bad.signature) is None
        assert store.get_record(bad.signature) is None
        assert store.find("alpha") == [good]
    assert sum("corrupt record" in m for m in caplog.messages) == 1
    store.close()
    index = store.index_path
    index.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    again = LocalStore(store.root)
    problems = again.verify()
    assert any("damaged index" in p for p in problems)
    assert again.find("alpha") == [good]  # rebuilt from the records


def test_verify_reports_index_entries_that_do_not_match_their_records(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    record = _record(store, "a")
    gone = _record(store, "b")
    assert store.find("alpha")  # indexed
    store.close()
    with sqlite3.connect(store.index_path) as conn:
        conn.execute("UPDATE records SET version = '9.9' WHERE signature = ?", (record.signature,))
    store.record_path(gone.signature).unlink()
    fresh = LocalStore(store.root)
    problems = fresh.verify()
    assert any(f"broken index entry {record.signature}" in p for p in problems)
    assert any(f"broken index entry {gone.signature}" in p for p in problems)
    fresh.gc({record.signature})
    assert fresh.verify() == []
    assert fresh.index_entries("alpha")[0].version == "1.0"


# -- put_blob repairs ------------------------------------------------------------------------


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_put_blob_replaces_an_existing_blob_whose_bytes_do_not_match(
    tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(tmp_path / "store")
    record = _record(store, "a")
    blob = _blob(store, record)
    (_flip if damage == "flip" else _truncate)(blob)
    source = tmp_path / "wheel"
    source.write_bytes(WHEEL)
    with caplog.at_level(logging.WARNING, logger="buildprint.store"):
        assert store.put_blob(source) == record.artifacts[0].sha256
    assert blob.read_bytes() == WHEEL
    assert any("damaged" in m for m in caplog.messages)
    assert len(list((store.root / "quarantine").iterdir())) == 1
    assert store.verify() == []


def test_put_blob_of_a_new_wheel_reads_nothing_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Cost: a build puts a wheel that is usually not stored yet, so the check is one stat;
    # only an existing blob of the same size is rehashed.
    from buildprint.store import local

    hashed: list[Path] = []
    real = local._hash_file

    def counting(path: Path) -> str:
        hashed.append(path)
        return real(path)

    monkeypatch.setattr(local, "_hash_file", counting)
    store = LocalStore(tmp_path / "store")
    store.put_blob_bytes(WHEEL)
    assert hashed == []
    store.put_blob_bytes(WHEEL)
    assert len(hashed) == 1


# -- verify and gc ---------------------------------------------------------------------------


def test_verify_lists_every_kind_of_problem_and_gc_removes_them(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    flipped = _record(store, "flipped", WHEEL + b"1", name="flipped")
    truncated = _record(store, "truncated", WHEEL + b"2", name="truncated")
    missing = _record(store, "missing", WHEEL + b"3", name="missing")
    broken = _record(store, "broken", WHEEL + b"4", name="broken")
    sound = _record(store, "sound", WHEEL + b"5", name="sound")
    _flip(_blob(store, flipped))
    _truncate(_blob(store, truncated))
    _blob(store, missing).unlink()
    store.record_path(broken.signature).write_text("{not json")
    dead = _dead_pid()
    leftover = store.tmp_dir / f"{fsio.HOST}.{dead}.abc0.tmp"
    leftover.write_bytes(b"half")
    live = store.tmp_dir / f"{fsio.HOST}.{os.getpid()}.abc1.tmp"
    live.write_bytes(b"in flight")
    orphan = store.root / "work" / f"{fsio.HOST}.{dead}.tmp.x1y2"
    (orphan / "tmpabc").mkdir(parents=True)
    (orphan / "tmpabc" / "input.json").write_text("{}")
    mine = store.root / "work" / f"{fsio.HOST}.{os.getpid()}.build.x3y4"
    mine.mkdir()

    problems = store.verify()
    text = "\n".join(problems)
    assert f"{_blob_path(store, flipped)}: corrupt blob" in text
    assert f"{_blob_path(store, truncated)}: truncated blob: 100 bytes" in text
    assert f"missing 1.0: blob {missing.artifacts[0].sha256}" in text and "is missing" in text
    assert f"{store.record_path(broken.signature)}: corrupt record" in text
    assert f"{leftover}: stray temp file" in text
    assert f"{orphan}: orphaned temp folder" in text
    assert str(live) not in text and str(mine) not in text  # a live process's
    assert sound.signature not in text

    keep = {r.signature for r in (flipped, truncated, missing, broken, sound)}
    assert store.gc(keep, grace_seconds=3600) > 0
    assert store.verify() == []
    assert live.exists() and mine.exists()
    assert not leftover.exists() and not orphan.exists()
    assert store.get_record(sound.signature) == sound
    assert [store.has_record(r.signature) for r in (flipped, truncated, missing, broken)] == [
        False
    ] * 4
    quarantined = sorted(p.name.partition(".")[0] for p in store.quarantine_dir.iterdir())
    assert quarantined == sorted(r.artifacts[0].sha256 for r in (flipped, truncated))


def _blob_path(store: LocalStore, record: ActionRecord) -> Path:
    digest = record.artifacts[0].sha256
    return store.cas_dir / digest[:2] / digest


def test_gc_gives_young_unreferenced_blobs_a_grace_period(tmp_path: Path) -> None:
    # Another process between put_blob and put_record: its blob is referenced by no record
    # yet. gc must leave it, or the put_record that follows fails.
    store = LocalStore(tmp_path / "store")
    writer = LocalStore(store.root)
    digest = writer.put_blob_bytes(WHEEL)
    assert store.gc(set(), grace_seconds=3600) == 0
    assert store.has_blob(digest)
    writer.put_record(
        ActionRecord(
            _sig("w"),
            "w",
            "1",
            {},
            (Artifact("w-1-py3-none-any.whl", digest, len(WHEEL), _sig("c")),),
        )
    )
    # An old unreferenced blob goes; putting the same bytes again renews a blob's age.
    orphan = store.put_blob_bytes(b"orphan")
    _age(store.cas_dir / orphan[:2] / orphan, 7200)
    assert store.gc({_sig("w")}, grace_seconds=3600) == 1
    assert not store.has_blob(orphan) and store.has_blob(digest)
    _age(store.cas_dir / digest[:2] / digest, 7200)
    store.put_blob_bytes(WHEEL)
    store.remove_record(_sig("w"))
    assert store.gc(set(), grace_seconds=3600) == 0


def test_gc_removes_lock_files_nobody_holds(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    locks = store.root / "locks"
    locks.mkdir()
    stale, young, held = (locks / f"{_sig(n)}.lock" for n in ("stale", "young", "held"))
    for path in (stale, young, held):
        path.touch()
    _age(stale, 7200)
    _age(held, 7200)
    fd = os.open(held, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        store.gc(set(), grace_seconds=3600)
    finally:
        os.close(fd)
    assert not stale.exists()
    assert young.exists() and held.exists()


def _fake_environment(root: Path, key: str, *, marked: bool = True) -> Path:
    env = root / key
    (env / "bin").mkdir(parents=True)
    if marked:
        (env / EnvironmentPool.MARK).write_text("[]")
    (root / f"{key}.lock").touch()
    return env


def test_gc_removes_build_environments_unused_for_days_but_never_a_held_one(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store")
    envs = store.root / "envs"
    recent = _fake_environment(envs, "recent")
    unused = _fake_environment(envs, "unused")
    held = _fake_environment(envs, "held")
    half = _fake_environment(envs, "half", marked=False)
    for env in (unused, held):
        _age(env / EnvironmentPool.MARK, 30 * 86400)
    _age(half, 7200)
    for key in ("unused", "held", "half"):
        _age(envs / f"{key}.lock", 7200)
    hold = fsio.shared_hold(envs / "held.lock")  # what EnvironmentPool.get takes
    try:
        store.gc(set(), grace_seconds=3600, unused_seconds=7 * 86400)
    finally:
        assert hold is not None
        os.close(hold)
    assert recent.is_dir() and held.is_dir()
    assert not unused.exists() and not half.exists()
    assert (envs / "held.lock").exists() and (envs / "recent.lock").exists()
    assert not (envs / "unused.lock").exists() and not (envs / "half.lock").exists()


def test_environment_pool_marks_use_and_holds_until_closed(tmp_path: Path) -> None:
    envs = tmp_path / "envs"
    pool = EnvironmentPool(envs, sys.executable)
    key = pool.key([])
    env = _fake_environment(envs, key)
    _age(env / EnvironmentPool.MARK, 30 * 86400)
    pool.get([], lambda: [])
    assert time.time() - (env / EnvironmentPool.MARK).stat().st_mtime < 60  # used now
    _age(env / EnvironmentPool.MARK, 30 * 86400)
    assert EnvironmentPool.remove_unused(envs, unused_seconds=86400, grace_seconds=0) == []
    pool.close()
    assert EnvironmentPool.remove_unused(envs, unused_seconds=86400, grace_seconds=0) == [
        env,
        Path(f"{env}.lock"),
    ]


def test_gc_removes_old_git_checkouts_and_partial_ones(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    git = store.root / "sources" / "git"
    old, kept, recent, partial = (git / n for n in ("a" * 40, "b" * 40, "c" * 40, ".tmp-x"))
    for folder in (old, kept, recent, partial):
        folder.mkdir(parents=True)
    for folder in (old, kept):
        _age(folder, 30 * 86400)
    _age(partial, 2 * 86400)
    store.gc(set(), keep_commits={"b" * 40})
    assert not old.exists() and not partial.exists()
    assert kept.exists() and recent.exists()


def test_process_temp_dir_is_owner_named_and_swept_once_its_process_is_gone(
    tmp_path: Path,
) -> None:
    import tempfile

    store = LocalStore(tmp_path / "store")
    before = tempfile.gettempdir()
    folder = fsio.process_temp_dir(store.root / "work")
    try:
        assert fsio.owner_tag() in folder.name
        with tempfile.TemporaryDirectory() as inner:
            assert Path(inner).parent == folder  # pyproject_hooks' input.json lands here
        assert store.verify() == []  # a live process's
    finally:
        fsio.release_process_temp_dir(folder)
    assert tempfile.gettempdir() == before and not folder.exists()
