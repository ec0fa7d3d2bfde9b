"""``gc`` limits on real store files: keep only the current builds, a size limit (least
recently used first), an age limit; blobs a kept record uses are never removed, nor are a
running build's blob or record; the report says what went, in counts and bytes."""

from __future__ import annotations

import os
import time
from pathlib import Path

from buildprint.fsio import stat_key
from buildprint.signature.canonical import digest_bytes
from buildprint.store.local import LocalStore
from buildprint.store.maintenance import collect_garbage, last_used, mark_used
from buildprint.store.record import ActionRecord, Artifact

DAY = 86400.0


def _sig(label: str) -> str:
    return digest_bytes(label.encode())


def _record(
    store: LocalStore, label: str, size: int = 1000, *, blob: bytes | None = None
) -> ActionRecord:
    """A record ``label`` (name ``label``, version 1.0) of one wheel: ``blob``, else
    ``size`` bytes of its own."""
    data = blob if blob is not None else label.encode().ljust(size, b".")
    digest = store.put_blob_bytes(data)
    record = ActionRecord(
        _sig(label),
        label,
        "1.0",
        {"signature": _sig(label)},
        (Artifact(f"{label}-1.0-py3-none-any.whl", digest, len(data), _sig("c" + label)),),
    )
    store.put_record(record)
    return record


def _age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


def _last_used_ago(store: LocalStore, record: ActionRecord, seconds: float) -> None:
    """Make ``record`` (its file, its blob, its use mark if any) last used ``seconds`` ago."""
    _age(store.record_path(record.signature), seconds)
    digest = record.artifacts[0].sha256
    _age(store.cas_dir / digest[:2] / digest, seconds)
    mark = store.root / "used" / record.signature
    if mark.exists():
        _age(mark, seconds)


def _sizes(store: LocalStore) -> int:
    """What the records and blobs of the store weigh, walked."""
    files = [*store.ac_dir.glob("*.json"), *store.cas_dir.glob("*/*")]
    return sum(p.stat().st_size for p in files)


def test_use_marks_set_the_last_use_and_leave_the_record_file_alone(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    record = _record(store, "alpha")
    _last_used_ago(store, record, 10 * DAY)
    before = stat_key(store.record_path(record.signature))
    assert time.time() - (last_used(store, record.signature) or 0) > 9 * DAY
    mark_used(store, [record.signature, record.signature])
    assert time.time() - (last_used(store, record.signature) or 0) < 60
    # A plan snapshot re-checks the record file's state: a use must not change it.
    assert stat_key(store.record_path(record.signature)) == before
    assert last_used(store, _sig("absent")) is None


def test_max_age_removes_the_records_unused_that_long_and_their_blobs(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    stale, used, recent = (_record(store, n) for n in ("stale", "used", "recent"))
    _last_used_ago(store, stale, 10 * DAY)
    _last_used_ago(store, used, 10 * DAY)
    _last_used_ago(store, recent, 2 * DAY)
    mark_used(store, [used.signature])  # a build run reused it just now
    report = collect_garbage(store, max_age_seconds=5 * DAY, grace_seconds=3600)
    assert [(r.name, r.reason, r.size) for r in report.records] == [("stale", "unused", 1000)]
    assert not store.has_record(stale.signature)
    assert not store.has_blob(stale.artifacts[0].sha256)
    assert [store.has_record(r.signature) for r in (used, recent)] == [True, True]
    assert report.blobs == 1 and report.blob_bytes == 1000
    assert report.record_bytes > 0 and report.bytes == report.blob_bytes + report.record_bytes
    assert report.kept_records == 2 and report.store_bytes == _sizes(store)
    assert store.verify() == []


def test_max_size_removes_the_least_recently_used_first(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    records = [_record(store, f"pkg{i}", 10_000) for i in range(4)]
    for i, record in enumerate(records):
        _last_used_ago(store, record, (10 - i) * DAY)  # pkg0 the least recently used
    mark_used(store, [records[0].signature])  # ... until a run used it now
    # Room for two of the four: pkg1 and pkg2 (then the least recently used) go.
    limit = _sizes(store) - 15_000
    report = collect_garbage(store, max_size=limit, grace_seconds=3600)
    assert [(r.name, r.reason) for r in report.records] == [
        ("pkg1", "over size"),
        ("pkg2", "over size"),
    ]
    assert [store.has_record(r.signature) for r in records] == [True, False, False, True]
    assert report.store_bytes == _sizes(store) <= limit
    assert report.max_size == limit
    # Under the limit: nothing more goes.
    again = collect_garbage(store, max_size=limit, grace_seconds=3600)
    assert again.records == [] and again.blobs == 0


def test_a_blob_a_kept_record_uses_is_never_removed(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    shared = b"the same wheel bytes, stored once".ljust(5000, b"!")
    old = _record(store, "old", blob=shared)
    new = _record(store, "new", blob=shared)
    _last_used_ago(store, old, 30 * DAY)
    _last_used_ago(store, new, 20 * DAY)
    # Over the limit by one record file: the least recently used record goes, the blob
    # both use stays (the kept one uses it), and that is enough.
    limit = _sizes(store) - store.record_path(old.signature).stat().st_size
    report = collect_garbage(store, max_size=limit, grace_seconds=0)
    assert [(r.name, r.reason) for r in report.records] == [("old", "over size")]
    assert report.blobs == 0 and report.store_bytes == limit
    report = collect_garbage(store, max_age_seconds=10 * DAY, keep_only=set())
    assert [r.name for r in report.records] == ["new"]  # not current (and unused for long)
    assert report.blobs == 1 and report.blob_bytes == len(shared)
    assert list(store.records()) == [] and store.verify() == []


def test_keep_only_keeps_the_current_records_and_nothing_else(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    current, superseded = _record(store, "current"), _record(store, "superseded")
    for record in (current, superseded):
        _last_used_ago(store, record, 2 * 3600)
    report = collect_garbage(store, keep_only={current.signature}, grace_seconds=3600)
    assert [(r.signature, r.name, r.version, r.reason) for r in report.records] == [
        (superseded.signature, "superseded", "1.0", "not current")
    ]
    assert store.get_record(current.signature) == current
    assert not store.has_blob(superseded.artifacts[0].sha256)
    assert store.find("superseded") == []


def test_a_running_build_keeps_its_blob_and_its_record(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    old = _record(store, "old")
    _last_used_ago(store, old, 30 * DAY)
    started = time.time()
    # Another process, building meanwhile: its blob is stored, its record not yet.
    writer = LocalStore(store.root)
    wheel = b"a wheel being stored by a build".ljust(3000, b"~")
    digest = writer.put_blob_bytes(wheel)
    report = collect_garbage(
        store, keep_only=set(), max_age_seconds=0, max_size=0, grace_seconds=3600, started=started
    )
    assert [r.name for r in report.records] == ["old"]
    assert store.has_blob(digest)
    # Its record lands (its blob is there), after the caller's plan began: no limit takes it.
    record = ActionRecord(
        _sig("w"), "w", "1", {}, (Artifact("w-1-py3-none-any.whl", digest, len(wheel), _sig("x")),)
    )
    writer.put_record(record)
    report = collect_garbage(
        store, keep_only=set(), max_age_seconds=0, max_size=0, grace_seconds=3600, started=started
    )
    assert report.records == [] and store.get_record(record.signature) == record
    assert report.max_size == 0 and report.store_bytes > 0  # over the limit, and it says so


def test_gc_drops_use_marks_of_records_gone_and_still_counts_files(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    kept, dropped = _record(store, "kept"), _record(store, "dropped")
    mark_used(store, [kept.signature, dropped.signature])
    (store.root / "used" / "not-a-signature").touch()
    # The old entry point: records not in ``keep`` go whatever their age; a count back.
    assert store.gc({kept.signature}) == 2  # dropped's record and blob
    assert sorted(p.name for p in (store.root / "used").iterdir()) == [kept.signature]
