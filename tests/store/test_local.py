"""The local store on real files: round trips, crashes, concurrent writers, index rebuilds."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from buildprint import fsio
from buildprint.errors import StoreError
from buildprint.signature.canonical import digest_bytes
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord, Artifact, is_digest


def _sig(text: str) -> str:
    return digest_bytes(text.encode())


def _record(
    store: LocalStore,
    signature: str,
    data: bytes,
    *,
    name: str = "Alpha_Pkg",
    version: str = "1.0",
    created: str = "2024-01-01T00:00:00Z",
) -> ActionRecord:
    digest = store.put_blob_bytes(data)
    record = ActionRecord(
        signature=signature,
        name=name,
        version=version,
        manifest={
            "signature": signature,
            "components": {"source": {"digest": _sig("src" + signature), "value": None}},
        },
        artifacts=(Artifact(f"{name}-{version}-py3-none-any.whl", digest, len(data), _sig("c")),),
        created=created,
    )
    store.put_record(record)
    return record


def _child(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_blob_and_record_round_trip(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    source = tmp_path / "alpha-1.0-py3-none-any.whl"
    source.write_bytes(b"wheel bytes" * 1000)
    digest = store.put_blob(source)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest()
    assert store.put_blob(source) == digest  # idempotent
    path = store.blob_path(digest)
    assert path == tmp_path / "store" / "cas" / digest[:2] / digest
    assert path.read_bytes() == source.read_bytes()
    assert store.has_blob(digest)
    assert store.blob_path(_sig("absent")) is None

    record = ActionRecord(
        signature=_sig("alpha"),
        name="Alpha",
        version="1.0",
        manifest={"signature": _sig("alpha"), "components": {}},
        artifacts=(Artifact(source.name, digest, source.stat().st_size, _sig("content")),),
    )
    assert not store.has_record(record.signature)
    store.put_record(record)
    assert store.has_record(record.signature)
    assert (tmp_path / "store" / "ac" / f"{record.signature}.json").read_bytes() == (
        record.to_bytes()
    )
    assert store.get_record(record.signature) == record
    assert store.find("alpha") == [record]
    assert list(store.records()) == [record]
    assert store.verify() == []

    # A second object (as another process would) sees the same.
    assert LocalStore(tmp_path / "store").get_record(record.signature) == record


def test_put_record_refuses_missing_or_short_blobs(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    digest = store.put_blob_bytes(b"12345")
    missing = ActionRecord(_sig("a"), "a", "1", {}, (Artifact("a.whl", _sig("x"), 5, _sig("c")),))
    with pytest.raises(StoreError, match="not in the store"):
        store.put_record(missing)
    wrong_size = ActionRecord(_sig("a"), "a", "1", {}, (Artifact("a.whl", digest, 6, _sig("c")),))
    with pytest.raises(StoreError, match="6"):
        store.put_record(wrong_size)
    assert not store.has_record(_sig("a"))
    assert store.find("a") == []


def test_find_normalizes_names_and_orders_newest_first(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    old = _record(store, _sig("1"), b"one", created="2024-01-01T00:00:00Z")
    new = _record(store, _sig("2"), b"two", created="2024-06-01T00:00:00Z")
    other = _record(store, _sig("3"), b"three", version="2.0", created="2023-01-01T00:00:00Z")
    _record(store, _sig("4"), b"four", name="beta")
    assert store.find("alpha.pkg") == [new, old, other]
    assert store.find("ALPHA-pkg", "1.0") == [new, old]
    entries = store.index_entries("alpha_pkg", "2.0")
    assert [e.signature for e in entries] == [other.signature]
    assert entries[0].components == other.component_digests()


def test_batch_lookup_of_a_thousand_signatures(tmp_path: Path) -> None:
    """A fresh store answers a thousand lookups at once, the absent one left out. (How fast
    is measured in bench/, not here: a timed test fails on a loaded machine.)"""
    store = LocalStore(tmp_path)
    digest = store.put_blob_bytes(b"shared wheel")
    sigs = [_sig(str(i)) for i in range(1000)]
    artifact = Artifact("p-1-py3-none-any.whl", digest, 12, _sig("c"))
    store.put_records(
        [ActionRecord(sig, f"p{i % 7}", "1", {}, (artifact,)) for i, sig in enumerate(sigs)]
    )
    fresh = LocalStore(tmp_path)
    assert all(fresh.has_record(sig) for sig in sigs)
    assert not fresh.has_record(_sig("absent"))
    found = fresh.get_records([*sigs, _sig("absent")])
    assert sorted(found) == sorted(sigs)
    assert {found[sig].name for sig in sigs[:7]} == {f"p{i}" for i in range(7)}
    fresh.close()
    store.close()


def test_index_is_rebuilt_from_records_when_deleted_or_corrupt(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    record = _record(store, _sig("a"), b"a")
    store.close()

    (tmp_path / "index.sqlite").unlink()
    assert LocalStore(tmp_path).find("alpha-pkg") == [record]

    for suffix in ("-wal", "-shm"):
        Path(f"{tmp_path / 'index.sqlite'}{suffix}").unlink(missing_ok=True)
    (tmp_path / "index.sqlite").write_bytes(b"garbage, not a database" * 100)
    rebuilt = LocalStore(tmp_path)
    assert rebuilt.find("alpha-pkg") == [record]
    rebuilt.close()
    with sqlite3.connect(tmp_path / "index.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM records").fetchone() == (1,)


def test_index_catches_up_with_records_written_behind_its_back(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    first = _record(store, _sig("a"), b"a")
    # A record file appearing without an index row (writer killed before indexing) ...
    late = ActionRecord(_sig("b"), "alpha-pkg", "1.0", {}, first.artifacts, "2030-01-01T00:00:00Z")
    (tmp_path / "ac" / f"{late.signature}.json").write_bytes(late.to_bytes())
    # ... and one vanishing: both are reconciled by the next store opened on the folder.
    (tmp_path / "ac" / f"{first.signature}.json").unlink()
    assert LocalStore(tmp_path).find("alpha-pkg") == [late]
    assert store.find("alpha-pkg") == [late]  # the index is shared by every store object
    # A record deleted while the index is open: its row is dropped on first use.
    (tmp_path / "ac" / f"{late.signature}.json").unlink()
    assert store.find("alpha-pkg") == []
    assert store.index_entries("alpha-pkg") == []


def test_corrupt_record_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(tmp_path)
    good = _record(store, _sig("good"), b"good")
    bad = _record(store, _sig("bad"), b"bad")
    (tmp_path / "ac" / f"{bad.signature}.json").write_bytes(b'{"format": "buildprint-rec')
    with caplog.at_level(logging.WARNING, logger="buildprint.store"):
        assert store.get_record(bad.signature) is None
        assert list(store.records()) == [good]
        assert store.find("alpha-pkg") == [good]
    assert any("corrupt record" in message for message in caplog.messages)
    assert any("corrupt record" in problem for problem in store.verify())


def test_record_whose_blob_is_gone_is_never_returned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = LocalStore(tmp_path)
    record = _record(store, _sig("a"), b"wheel")
    blob = store.blob_path(record.artifacts[0].sha256)
    assert blob is not None
    blob.unlink()
    with caplog.at_level(logging.WARNING, logger="buildprint.store"):
        assert store.get_record(record.signature) is None
        assert store.get_records([record.signature]) == {}
        assert store.find("alpha-pkg") == []
    assert any("missing" in message for message in caplog.messages)
    assert any("missing" in problem for problem in store.verify())


def test_verify_detects_tampered_blob(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    record = _record(store, _sig("a"), b"original bytes")
    blob = store.blob_path(record.artifacts[0].sha256)
    assert blob is not None
    blob.chmod(0o644)
    blob.write_bytes(b"tampered bytes")  # same size: only rehashing can tell
    problems = store.verify()
    assert any("does not match its digest" in p and str(blob) in p for p in problems)
    assert any("damaged" in p and record.signature in p for p in problems)


def test_gc_keeps_what_is_asked_and_removes_the_rest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    kept = _record(store, _sig("keep"), b"kept wheel")
    dropped = _record(store, _sig("drop"), b"dropped wheel")
    orphan = store.put_blob_bytes(b"never recorded")
    assert store.gc({kept.signature}) == 3  # dropped's record and blob, the orphan blob
    assert store.get_record(kept.signature) == kept
    assert not store.has_record(dropped.signature)
    assert not store.has_blob(dropped.artifacts[0].sha256)
    assert not store.has_blob(orphan)
    assert store.find("alpha-pkg") == [kept]
    assert store.verify() == []

    young = store.put_blob_bytes(b"just written")
    assert store.gc({kept.signature}, grace_seconds=3600) == 0
    assert store.has_blob(young)


def test_kill_while_writing_a_blob_leaves_only_a_stray_temp_file(tmp_path: Path) -> None:
    root = tmp_path / "store"
    LocalStore(root)
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    child = _child(
        f"""
        from pathlib import Path
        from buildprint.store.local import LocalStore
        LocalStore(Path({str(root)!r})).put_blob(Path({str(fifo)!r}))
        """
    )
    try:
        with open(fifo, "wb") as feed:
            feed.write(b"x" * (4 << 20))  # the child is now copying into a temp file
            feed.flush()
            deadline = time.monotonic() + 20
            while not any((root / "tmp").iterdir()) and time.monotonic() < deadline:
                time.sleep(0.01)
            child.send_signal(signal.SIGKILL)
            child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    store = LocalStore(root)
    problems = store.verify()
    assert problems and all("stray temp file" in p for p in problems)
    assert list(store.records()) == []
    assert list((root / "cas").iterdir()) == []
    assert store.gc(set()) >= 1
    assert store.verify() == []


def test_kill_between_blob_and_record_leaves_no_record(tmp_path: Path) -> None:
    root = tmp_path / "store"
    child = _child(
        f"""
        import sys, time
        from pathlib import Path
        from buildprint.store.local import LocalStore
        store = LocalStore(Path({str(root)!r}))
        print(store.put_blob_bytes(b"built wheel"), flush=True)
        time.sleep(60)  # killed here, before put_record
        """
    )
    assert child.stdout is not None
    digest = child.stdout.readline().strip()
    child.send_signal(signal.SIGKILL)
    child.wait()
    store = LocalStore(root)
    assert store.has_blob(digest)
    assert list(store.records()) == []
    assert store.verify() == []


def test_kill_at_random_instants_never_leaves_an_invalid_record(tmp_path: Path) -> None:
    root = tmp_path / "store"
    for round_ in range(4):
        child = _child(
            f"""
            from pathlib import Path
            from buildprint.signature.canonical import digest_bytes
            from buildprint.store.local import LocalStore
            from buildprint.store.record import ActionRecord, Artifact
            store = LocalStore(Path({str(root)!r}))
            print("ready", flush=True)
            i = 0
            while True:
                data = b"wheel %d %d" % ({round_}, i) * 5000
                digest = store.put_blob_bytes(data)
                sig = digest_bytes(b"%d %d" % ({round_}, i))
                art = Artifact("p-1-py3-none-any.whl", digest, len(data), digest)
                store.put_record(ActionRecord(sig, "p", "1", {{}}, (art,)))
                i += 1
            """
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.05 + 0.07 * round_)
        child.send_signal(signal.SIGKILL)
        child.wait()
    store = LocalStore(root)
    record_files = list((root / "ac").glob("*.json"))
    assert record_files, "the writer never got to write a record"
    # Every record file on disk is complete and its blobs are there.
    assert len(store.get_records(p.stem for p in record_files)) == len(record_files)
    assert all("stray temp file" in p for p in store.verify())
    store.gc({p.stem for p in record_files})
    assert store.verify() == []
    assert len(store.find("p")) == len(record_files)


def test_concurrent_writers_of_one_signature_leave_one_consistent_entry(tmp_path: Path) -> None:
    root = tmp_path / "store"
    signature = _sig("contested")
    children = [
        _child(
            f"""
            from pathlib import Path
            from buildprint.store.local import LocalStore
            from buildprint.store.record import ActionRecord, Artifact
            store = LocalStore(Path({str(root)!r}))
            for i in range(25):
                data = b"writer {n} build %d" % i
                digest = store.put_blob_bytes(data)
                art = Artifact("p-1-py3-none-any.whl", digest, len(data), digest)
                created = "2024-01-01T00:00:%02dZ" % i
                store.put_record(ActionRecord({signature!r}, "p", "1", {{}}, (art,), created))
            print("done", flush=True)
            """
        )
        for n in range(4)
    ]
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        assert out.strip() == "done"
    store = LocalStore(root)
    record = store.get_record(signature)
    assert record is not None
    assert [p.name for p in (root / "ac").iterdir()] == [f"{signature}.json"]
    entries = store.index_entries("p")
    assert [(e.signature, e.created) for e in entries] == [(signature, record.created)]
    assert store.find("p") == [record]
    assert store.verify() == []


def test_threads_share_one_store_object(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(20):
                _record(store, _sig(f"{n}-{i}"), b"%d-%d" % (n, i), name=f"pkg{n}")
                assert store.find(f"pkg{n}")
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(len(store.find(f"pkg{n}")) for n in range(4)) == 80
    store.close()
    assert store.verify() == []


def test_non_digest_keys_are_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(StoreError):
        store.blob_path("../../etc/passwd")
    with pytest.raises(StoreError):
        store.has_record("../escape")


def _downloaded(store: LocalStore, data: bytes) -> tuple[str, Path]:
    """A verified download waiting beside its CAS place, as ``Remote.get_blob`` leaves it."""
    digest = hashlib.sha256(data).hexdigest()
    path = store.new_tmp_path(digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest, path


def _fetched(
    store: LocalStore, i: int, data: bytes | None = None
) -> tuple[ActionRecord, dict[str, Path]]:
    """A record and its verified download waiting in the store's temp folder."""
    data = b"fetched wheel %d" % i * 100 if data is None else data
    digest, path = _downloaded(store, data)
    art = Artifact(f"p{i}-1-py3-none-any.whl", digest, len(data), digest)
    return ActionRecord(_sig(f"fetched {i}"), f"p{i}", "1", {}, (art,)), {digest: path}


def test_put_records_adopts_downloads_without_copying(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    record, blobs = _fetched(store, 1, b"fetched wheel" * 1000)
    [(digest, path)] = blobs.items()
    inode = path.stat().st_ino
    store.put_records([record], blobs=blobs)
    stored = store.blob_path(digest)
    assert stored is not None and stored.read_bytes() == b"fetched wheel" * 1000
    assert stored.stat().st_ino == inode  # renamed, not copied
    assert not path.exists()
    assert stored.stat().st_mode & 0o222 == 0
    assert store.get_record(record.signature) == record
    # The same blob fetched again for another record: one copy, no temp file left.
    again, blobs2 = _fetched(store, 2, b"fetched wheel" * 1000)
    store.put_records([again], blobs=blobs2)
    assert not next(iter(blobs2.values())).exists()
    assert store.get_record(again.signature) == again
    assert store.verify() == []


def test_put_records_refuses_a_wrong_size_and_downloads_outside_tmp(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    record, blobs = _fetched(store, 1, b"short")
    [(digest, path)] = blobs.items()
    wrong = ActionRecord(
        record.signature, "p1", "1", {}, (Artifact("p1-1-py3-none-any.whl", digest, 6, digest),)
    )
    with pytest.raises(StoreError, match="has 5 bytes, record says 6"):
        store.put_records([wrong], blobs=blobs)
    # Nothing stored; the download is still the caller's.
    assert not store.has_blob(digest) and not store.has_record(record.signature)
    assert path.exists()
    outside = tmp_path / "elsewhere"
    outside.write_bytes(b"short")
    with pytest.raises(StoreError, match="only temp files of the store"):
        store.put_records([record], blobs={digest: outside})
    assert not store.has_blob(digest) and not store.has_record(record.signature)


def test_put_records_stores_a_batch_in_one_go(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    records = []
    blobs: dict[str, Path] = {}
    for i in range(50):
        record, download = _fetched(store, i)
        records.append(record)
        blobs |= download
    # Half staged by "other threads", half plain.
    items = [store.stage_record(r) if i % 2 else r for i, r in enumerate(records)]
    store.put_records(items, blobs=blobs)
    assert store.get_records(r.signature for r in records) == {r.signature: r for r in records}
    assert [r.signature for r in store.find("p7")] == [records[7].signature]
    assert store.verify() == []  # no temp file left
    # The index agrees with the files for a fresh process too.
    store.close()
    (tmp_path / "store" / "index.sqlite").unlink()
    assert [r.signature for r in LocalStore(tmp_path / "store").find("p31")] == [
        records[31].signature
    ]


def test_downloads_left_in_cas_folders_are_reported_and_removed_once_their_writer_is_gone(
    tmp_path: Path,
) -> None:
    store = LocalStore(tmp_path / "store")
    kept = _record(store, _sig("kept"), b"kept wheel")
    digest, mine = _downloaded(store, b"a download of this process")
    # The same name as a download of a process that has exited.
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    orphan = mine.with_name(mine.name.replace(f".{os.getpid()}.", f".{dead}.", 1))
    orphan.write_bytes(b"half a download")
    problems = store.verify()
    # Only the dead writer's file is a problem: a live writer's download (this process's)
    # is a write in progress, and verify (run beside a build) must not fail on it. (This
    # test used to expect both.)
    assert problems == [f"{orphan}: stray temp file from an interrupted write"]
    store.gc({kept.signature})
    assert mine.exists() and not orphan.exists()  # this process may still adopt its own
    assert store.get_record(kept.signature) == kept and store.has_blob(kept.artifacts[0].sha256)
    assert not store.has_blob(digest)


@pytest.mark.parametrize("in_batches", [True, False], ids=["syncfs", "file by file"])
def test_put_records_flushes_downloads_and_records_before_naming_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_batches: bool
) -> None:
    import buildprint.store.local as local_module

    assert fsio.can_sync_filesystem() == sys.platform.startswith("linux")
    store = LocalStore(tmp_path / "store", flush_in_batches=in_batches)
    flushes: list[tuple[str, Path, list[Path]]] = []  # what, which, names in cas/ and ac/

    def spy(what: str, real: Callable[[Path], None]) -> Callable[[Path], None]:
        def flush(path: Path) -> None:
            blobs = [p for p in store.cas_dir.glob("*/*") if is_digest(p.name)]
            flushes.append((what, Path(path), sorted([*blobs, *store.ac_dir.glob("*.json")])))
            real(path)

        return flush

    for what in ("sync_filesystem", "fsync_file", "fsync_dir"):
        monkeypatch.setattr(local_module, what, spy(what, getattr(fsio, what)))
    records = []
    blobs: dict[str, Path] = {}
    for i in range(12):
        record, download = _fetched(store, i)
        records.append(store.stage_record(record))
        blobs |= download
    assert flushes == []  # staging flushes (if at all) with os.fsync on the open file
    assert all(item.flushed is not in_batches for item in records)
    store.put_records(records, blobs=blobs)
    assert len(store.get_records(item.record.signature for item in records)) == 12
    *before, last = flushes
    # Every flush of bytes comes before any name appears; the entries' folder after them all.
    assert all(names == [] for _, _, names in before)
    assert last[:2] == ("fsync_dir", store.ac_dir) and len(last[2]) == 24
    if in_batches:
        assert [(what, path) for what, path, _ in before] == [("sync_filesystem", store.root)]
    else:  # the records were flushed when staged; the downloads one by one
        assert sorted(path for _, path, _ in before) == sorted(blobs.values())
        assert {what for what, _, _ in before} == {"fsync_file"}
    # A lone record later costs one fsync (its own bytes, if not flushed yet), not a syncfs.
    flushes.clear()
    store.put_records([records[0].record])
    assert [what for what, _, _ in flushes] == (
        ["fsync_file", "fsync_dir"] if in_batches else ["fsync_dir"]
    )


def test_put_records_writes_nothing_when_one_record_lacks_a_blob(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    good = _record(store, _sig("good"), b"good wheel")
    store.remove_record(good.signature)
    missing = Artifact("q-1-py3-none-any.whl", _sig("absent"), 3, _sig("absent"))
    bad = ActionRecord(_sig("bad"), "q", "1", {}, (missing,))
    staged = store.stage_record(good)
    with pytest.raises(StoreError, match="not in the store"):
        store.put_records([staged, bad])
    assert store.get_record(good.signature) is None
    assert not staged.tmp.exists()
    assert store.verify() == []


def test_kill_during_batched_fetch_writes_never_leaves_an_invalid_record(tmp_path: Path) -> None:
    root = tmp_path / "store"
    for round_ in range(4):
        child = _child(
            f"""
            import hashlib
            from pathlib import Path
            from buildprint.signature.canonical import digest_bytes
            from buildprint.store.local import LocalStore
            from buildprint.store.record import ActionRecord, Artifact
            store = LocalStore(Path({str(root)!r}))
            print("ready", flush=True)
            i = 0
            while True:
                batch = []
                blobs = {{}}
                for j in range(8):
                    data = b"wheel %d %d %d" % ({round_}, i, j) * 5000
                    digest = hashlib.sha256(data).hexdigest()
                    path = store.new_tmp_path(digest)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    blobs[digest] = path
                    sig = digest_bytes(b"%d %d %d" % ({round_}, i, j))
                    art = Artifact("p-1-py3-none-any.whl", digest, len(data), digest)
                    record = ActionRecord(sig, "p", "1", {{}}, (art,))
                    batch.append(store.stage_record(record) if j % 2 else record)
                store.put_records(batch, blobs=blobs)
                i += 1
            """
        )
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.05 + 0.07 * round_)
        child.send_signal(signal.SIGKILL)
        child.wait()
    store = LocalStore(root)
    record_files = list((root / "ac").glob("*.json"))
    assert record_files, "the writer never got to write a record"
    assert len(store.get_records(p.stem for p in record_files)) == len(record_files)
    assert all("stray temp file" in p for p in store.verify())
    store.gc({p.stem for p in record_files})
    assert store.verify() == []
    assert len(store.find("p")) == len(record_files)
