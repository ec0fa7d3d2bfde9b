"""The embedded local store: content-addressed blobs, action-cache records, a SQLite index."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TypeVar

from packaging.utils import canonicalize_name

from buildprint.errors import StoreError
from buildprint.fsio import can_sync_filesystem, fsync_dir, fsync_file, sync_filesystem
from buildprint.store.record import ActionRecord, is_digest

__all__ = ["IndexEntry", "LocalStore", "StagedRecord", "record_of"]

log = logging.getLogger("buildprint.store")

_T = TypeVar("_T")

_CHUNK = 1 << 20
_INDEX_SCHEMA = 1
#: Temp files of other hosts (shared folders) cannot be checked for a live owner; after this
#: long they are taken to be abandoned.
_STALE_TMP_SECONDS = 24 * 3600
_HOST = socket.gethostname().replace(".", "_") or "host"
#: Temp names: host, pid, this process's random token and a counter (no syscall per name).
_TMP_TOKEN = uuid.uuid4().hex[:12]
_tmp_counter = itertools.count()
#: From this many files to flush at once, one syncfs(2) beats an fsync each.
_SYNCFS_FROM = 4


@dataclass(frozen=True)
class IndexEntry:
    """One row of the index: enough to rank candidates without reading record files."""

    signature: str
    name: str
    version: str
    created: str
    components: dict[str, str]


@dataclass(frozen=True)
class StagedRecord:
    """A record written to a temp file by ``LocalStore.stage_record``, not yet visible:
    ``put_records`` renames it into ``ac/``. ``inode`` tells the index, later, whether the entry
    on disk is still this file; ``flushed`` whether its bytes were flushed already (otherwise
    ``put_records`` flushes them before the rename)."""

    record: ActionRecord
    tmp: Path
    inode: int
    flushed: bool

    def discard(self) -> None:
        """Remove the temp file (for a staged record that will not be stored)."""
        self.tmp.unlink(missing_ok=True)


def record_of(item: ActionRecord | StagedRecord) -> ActionRecord:
    """The record itself, staged or not."""
    return item.record if isinstance(item, StagedRecord) else item


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """True for a damaged index file, as opposed to contention or a programming error."""
    text = str(exc).lower()
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return True
    # Plain DatabaseError (not Operational/Integrity/...) is what SQLite's damage codes map to.
    return type(exc) is sqlite3.DatabaseError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalStore:
    """A store rooted at ``root``; safe for several threads and processes at once.

    Layout: ``cas/<2 hex>/<64 hex>`` blobs, ``ac/<signature>.json`` records,
    ``index.sqlite`` (derived, rebuilt from ``ac/`` when missing or corrupt),
    ``tmp/`` for in-flight writes. The files are the truth; the index only speeds up
    queries by name.
    """

    def __init__(self, root: Path, *, flush_in_batches: bool | None = None) -> None:
        self.root = Path(root)
        self.cas_dir = self.root / "cas"
        self.ac_dir = self.root / "ac"
        self.tmp_dir = self.root / "tmp"
        self.index_path = self.root / "index.sqlite"
        try:
            for folder in (self.cas_dir, self.ac_dir, self.tmp_dir):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store: {exc}", file=self.root) from None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._reconciled = False
        #: Flush in batches: one syncfs(2) for the whole store (Linux, one filesystem); by
        #: default wherever that works.
        if flush_in_batches is None:
            flush_in_batches = can_sync_filesystem() and self._on_one_filesystem()
        self._flush_in_batches = flush_in_batches

    def _on_one_filesystem(self) -> bool:
        folders = (self.cas_dir, self.ac_dir, self.tmp_dir)
        try:
            return len({os.stat(folder).st_dev for folder in folders}) == 1
        except OSError:
            return False

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close every index connection this object opened (in any thread)."""
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- paths -----------------------------------------------------------------------

    def _blob_file(self, digest: str) -> Path:
        if not is_digest(digest):
            raise StoreError(f"{digest!r} is not a sha256 hex digest", file=self.root)
        return self.cas_dir / digest[:2] / digest

    def _record_file(self, signature: str) -> Path:
        if not is_digest(signature):
            raise StoreError(f"{signature!r} is not a signature", file=self.root)
        return self.ac_dir / f"{signature}.json"

    def record_path(self, signature: str) -> Path:
        """The file holding ``signature``'s record (whose state a plan snapshot re-checks)."""
        return self._record_file(signature)

    def new_tmp_path(self, digest: str | None = None) -> Path:
        """A fresh, unused temp name in the store (same filesystem as the CAS); nothing is
        created. With ``digest``, the name is in the CAS folder that blob belongs in, so that
        storing it is a rename within one folder: download a blob there (``Remote.get_blob``)
        and hand it to ``put_records(..., blobs=)``. The name carries host and pid, so ``gc``
        removes it (and any ``.<name>.*.part`` beside it) only once its writer is gone.
        """
        folder = self.tmp_dir if digest is None else self._blob_file(digest).parent
        return folder / f"{_HOST}.{os.getpid()}.{_TMP_TOKEN}{next(_tmp_counter)}.tmp"

    def _new_tmp(self) -> tuple[Path, IO[bytes]]:
        path = self.new_tmp_path()
        try:
            handle = open(path, "xb")  # noqa: SIM115 - closed by the callers
        except FileNotFoundError:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            handle = open(path, "xb")  # noqa: SIM115
        return path, handle

    # -- blobs -----------------------------------------------------------------------

    def _commit_blob(self, tmp: Path, digest: str) -> None:
        dest = self._blob_file(digest)
        if dest.exists():
            # Already stored: keep the existing bytes and refresh its age so a concurrent
            # gc with a grace period does not take it while a record is being written.
            tmp.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                os.utime(dest)
            return
        dest.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)
        fsync_dir(dest.parent)

    def _write_blob(self, chunks: Iterable[bytes]) -> str:
        tmp, handle = self._new_tmp()
        try:
            hasher = hashlib.sha256()
            with handle:
                for chunk in chunks:
                    hasher.update(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            digest = hasher.hexdigest()
            self._commit_blob(tmp, digest)
            return digest
        finally:
            tmp.unlink(missing_ok=True)

    def put_blob(self, path: Path) -> str:
        """Copy the file at ``path`` into the CAS (hashing while copying); return its digest."""
        try:
            source = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise StoreError(f"cannot read blob source: {exc.strerror}", file=path) from None
        with source:
            return self._write_blob(iter(lambda: source.read(_CHUNK), b""))

    def put_blob_bytes(self, data: bytes) -> str:
        """Store ``data`` in the CAS; return its digest."""
        return self._write_blob([data])

    def blob_path(self, digest: str) -> Path | None:
        """Path of the stored blob, or None if absent. Read it only; never modify it."""
        path = self._blob_file(digest)
        return path if path.is_file() else None

    def has_blob(self, digest: str) -> bool:
        """True if the blob is present (a stat; content is checked by ``verify``)."""
        return self._blob_file(digest).is_file()

    # -- records ---------------------------------------------------------------------

    def has_record(self, signature: str) -> bool:
        """True if a record file exists for ``signature`` (one stat; no validation)."""
        return self._record_file(signature).is_file()

    def put_record(self, record: ActionRecord) -> None:
        """Store ``record``; every artifact blob must already be present with its size.

        The record file is written last, atomically, so a process killed at any instant
        leaves either no record or a complete one. A record for the same signature is
        replaced (last writer wins); the index is then made to match the file on disk.
        """
        self.put_records([record])

    def stage_record(self, record: ActionRecord) -> StagedRecord:
        """Write ``record`` to a temp file in the store; nothing is visible yet.

        The slow part of storing a record (create, write, and fsync unless the store flushes
        in batches) without the checks and the rename: threads can stage records in parallel
        and one ``put_records`` call then makes them all appear at once. Blobs are not checked
        here; ``put_records`` checks them.
        """
        tmp, handle = self._new_tmp()
        try:
            with handle:
                handle.write(record.to_bytes())
                handle.flush()
                if not self._flush_in_batches:
                    os.fsync(handle.fileno())
                inode = os.fstat(handle.fileno()).st_ino
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StagedRecord(record, tmp, inode, flushed=not self._flush_in_batches)

    def put_records(
        self,
        records: Sequence[ActionRecord | StagedRecord],
        *,
        blobs: Mapping[str, Path] | None = None,
    ) -> None:
        """Store several records at once: one index transaction, one ``ac/`` folder flush.

        ``records`` may mix plain records and ones already staged (``stage_record``).
        ``blobs`` maps digests to downloads waiting in the store (named by
        ``new_tmp_path(digest)``) that the caller has checked hash to their digest, as
        ``Remote.get_blob`` does while downloading: they join the CAS with this call, without
        a second copy or hash. Every record is checked first (all its blobs stored or given,
        with their recorded sizes); if any fails, ``StoreError`` names it and nothing is
        written (staged records are removed; ``blobs`` stay the caller's).

        Then the given blobs and the staged records are flushed (one ``syncfs`` for them all
        on Linux, else an fsync each), and only then renamed into ``cas/`` and ``ac/``: no
        name, blob or record, ever points at bytes that a crash could lose, and a process
        killed at any instant leaves each entry absent or complete. (A record whose blob name
        a crash lost is read as absent: reads check that every blob is there with its size.)
        A record for a signature already stored replaces it (last writer wins).
        """
        given = dict(blobs or {})
        for digest, path in given.items():
            folder = self._blob_file(digest).parent  # a digest, or StoreError
            if path.parent not in (folder, self.tmp_dir) and path.parent.resolve() not in (
                folder.resolve(),
                self.tmp_dir.resolve(),
            ):
                raise StoreError(
                    f"cannot store {path}: only temp files of the store can be adopted",
                    file=self.root,
                )
        # Every temp file this call is handed or makes; removed at the end whatever happens
        # (after a rename there is nothing left to remove).
        temps = [item for item in records if isinstance(item, StagedRecord)]
        try:
            # Last one wins for a signature given twice, as it would with separate calls.
            latest: dict[str, ActionRecord | StagedRecord] = {}
            for item in records:
                latest[record_of(item).signature] = item
            for item in latest.values():
                self._check_blobs(record_of(item), given)
            staged: list[StagedRecord] = []
            for item in latest.values():
                if not isinstance(item, StagedRecord):
                    item = self.stage_record(item)
                    temps.append(item)
                staged.append(item)
            self._flush([*given.values(), *(item.tmp for item in staged if not item.flushed)])
            for digest, path in given.items():
                self._adopt(digest, path)
            for item in staged:
                os.replace(item.tmp, self._record_file(item.record.signature))
            fsync_dir(self.ac_dir)
        finally:
            for item in temps:
                item.discard()
        self._index_from_files(
            [item.record.signature for item in staged],
            known={item.record.signature: (item.inode, item.record) for item in staged},
        )

    def _flush(self, files: Sequence[Path]) -> None:
        """Make the bytes of ``files`` durable: one ``syncfs`` for many where the store flushes
        in batches, else an fsync each."""
        if self._flush_in_batches and len(files) >= _SYNCFS_FROM:
            sync_filesystem(self.root)
            return
        for path in files:
            fsync_file(path)

    def _adopt(self, digest: str, path: Path) -> None:
        """Rename a flushed, verified download into the CAS (read-only). A blob already stored
        is replaced by these identical bytes, which also renews its age for ``gc``."""
        dest = self._blob_file(digest)
        os.chmod(path, 0o444)
        try:
            os.replace(path, dest)
        except FileNotFoundError:
            dest.parent.mkdir(exist_ok=True)
            os.replace(path, dest)

    def _check_blobs(self, record: ActionRecord, given: Mapping[str, Path]) -> None:
        """``StoreError`` unless each of the record's blobs is stored or given, with its size."""
        for artifact in record.artifacts:
            blob = given.get(artifact.sha256) or self._blob_file(artifact.sha256)
            try:
                size = blob.stat().st_size
            except FileNotFoundError:
                raise StoreError(
                    f"record {record.signature}: blob {artifact.sha256} "
                    f"({artifact.filename}) is not in the store",
                    file=self.root,
                ) from None
            if size != artifact.size:
                raise StoreError(
                    f"record {record.signature}: blob {artifact.sha256} has {size} bytes, "
                    f"record says {artifact.size}",
                    file=self.root,
                )

    def _load_record(self, signature: str) -> tuple[ActionRecord | None, str | None]:
        """Read and check one record: (record, None), (None, problem) or (None, None) if absent."""
        path = self._record_file(signature)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"{path}: unreadable record: {exc.strerror}"
        try:
            record = ActionRecord.from_bytes(data)
        except StoreError as exc:
            return None, f"{path}: corrupt record: {exc.message}"
        if record.signature != signature:
            return None, f"{path}: record is for signature {record.signature}"
        for artifact in record.artifacts:
            blob = self._blob_file(artifact.sha256)
            try:
                size = blob.stat().st_size
            except FileNotFoundError:
                return None, f"{path}: blob {artifact.sha256} ({artifact.filename}) is missing"
            if size != artifact.size:
                return None, (
                    f"{path}: blob {artifact.sha256} ({artifact.filename}) has {size} bytes, "
                    f"record says {artifact.size}"
                )
        return record, None

    def get_record(self, signature: str) -> ActionRecord | None:
        """The valid record for ``signature``, or None.

        A corrupt record or one whose blobs are gone is reported with ``logging.warning``
        and treated as absent; blobs are checked by stat (presence and size), not rehashed.
        """
        record, problem = self._load_record(signature)
        if problem is not None:
            log.warning("ignoring store entry: %s", problem)
        return record

    def get_records(self, signatures: Iterable[str]) -> dict[str, ActionRecord]:
        """Valid records for the given signatures, keyed by signature (absent ones left out)."""
        found: dict[str, ActionRecord] = {}
        for signature in dict.fromkeys(signatures):
            record = self.get_record(signature)
            if record is not None:
                found[signature] = record
        return found

    def _record_signatures(self) -> list[str]:
        out: list[str] = []
        try:
            entries = os.scandir(self.ac_dir)
        except FileNotFoundError:
            return out
        with entries:
            for entry in entries:
                stem, dot, ext = entry.name.rpartition(".")
                if dot and ext == "json" and is_digest(stem):
                    out.append(stem)
        out.sort()
        return out

    def records(self) -> Iterator[ActionRecord]:
        """Every valid record, in signature order (invalid ones are warned about and skipped)."""
        for signature in self._record_signatures():
            record = self.get_record(signature)
            if record is not None:
                yield record

    def remove_record(self, signature: str) -> bool:
        """Delete the record (blobs stay until ``gc``); return True if there was one."""
        path = self._record_file(signature)
        try:
            path.unlink()
            existed = True
        except FileNotFoundError:
            existed = False
        self._index_from_file(signature)
        return existed

    def find(self, name: str, version: str | None = None) -> list[ActionRecord]:
        """Valid records for ``name`` (PEP 503-normalized), optionally one version; newest first."""
        entries = self.index_entries(name, version)
        records = self.get_records(entry.signature for entry in entries)
        stale = [entry.signature for entry in entries if entry.signature not in records]
        if stale:
            # Files are the truth: rows whose record vanished are dropped from the index.
            for signature in stale:
                if not self.has_record(signature):
                    self._index_from_file(signature)
        return [records[entry.signature] for entry in entries if entry.signature in records]

    def index_entries(self, name: str, version: str | None = None) -> list[IndexEntry]:
        """Index rows for ``name`` (newest first), for ranking without reading records."""
        query = "SELECT signature, name, version, created, components FROM records WHERE name = ?"
        params: list[str] = [canonicalize_name(name)]
        if version is not None:
            query += " AND version = ?"
            params.append(version)
        query += " ORDER BY created DESC, signature"
        rows = self._run(lambda: self._index().execute(query, params).fetchall())
        return [
            IndexEntry(
                signature=row[0],
                name=row[1],
                version=row[2],
                created=row[3],
                components=json.loads(row[4]),
            )
            for row in rows
        ]

    # -- maintenance -----------------------------------------------------------------

    def _scan(self) -> tuple[list[str], list[Path]]:
        """One pass over the store's folders: the blob digests in ``cas/``, and the temp files
        (everything in ``tmp/``, and non-digest names in CAS folders: fetch downloads)."""
        digests: list[str] = []
        temps: list[Path] = []
        with contextlib.suppress(FileNotFoundError):
            temps.extend(p for p in self.tmp_dir.iterdir() if p.is_file())
        try:
            with os.scandir(self.cas_dir) as entries:
                shards = sorted(e.path for e in entries if e.is_dir())
        except FileNotFoundError:
            shards = []
        for shard in shards:
            with os.scandir(shard) as entries:
                for entry in entries:
                    if is_digest(entry.name):
                        digests.append(entry.name)
                    else:
                        temps.append(Path(entry.path))
        return sorted(digests), sorted(temps)

    def _tmp_abandoned(self, path: Path) -> bool:
        """True if no live writer can still own this temp file."""
        # "<host>.<pid>.<uuid>.tmp", or a download's ".<that>.<uuid>.part" beside it.
        parts = path.name.lstrip(".").split(".")
        if len(parts) >= 4 and parts[0] == _HOST and parts[1].isdigit():
            pid = int(parts[1])
            if pid != os.getpid():
                return not _pid_alive(pid)
            return False
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            return False
        return age > _STALE_TMP_SECONDS

    def verify(self) -> list[str]:
        """Rehash everything; return problems (empty when the store is sound).

        Reports blobs whose bytes no longer match their digest, records that are corrupt
        or point to missing blobs, and temp files left by interrupted writes.
        """
        problems: list[str] = []
        bad_blobs: set[str] = set()
        digests, temps = self._scan()
        for digest in digests:
            path = self.cas_dir / digest[:2] / digest
            hasher = hashlib.sha256()
            try:
                with open(path, "rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        hasher.update(chunk)
            except OSError as exc:
                problems.append(f"{path}: unreadable blob: {exc.strerror}")
                bad_blobs.add(digest)
                continue
            if hasher.hexdigest() != digest:
                problems.append(f"{path}: blob content does not match its digest")
                bad_blobs.add(digest)
        for signature in self._record_signatures():
            record, problem = self._load_record(signature)
            if problem is not None:
                problems.append(problem)
                continue
            assert record is not None
            for artifact in record.artifacts:
                if artifact.sha256 in bad_blobs:
                    problems.append(
                        f"{self._record_file(signature)}: blob {artifact.sha256} "
                        f"({artifact.filename}) is damaged"
                    )
        for tmp in temps:
            problems.append(f"{tmp}: stray temp file from an interrupted write")
        return problems

    def gc(self, keep: set[str], *, grace_seconds: float = 0.0) -> int:
        """Drop records not in ``keep``, blobs no kept record uses, abandoned temp files.

        Returns the number of files removed. Blobs younger than ``grace_seconds`` are kept,
        so a concurrent writer between ``put_blob`` and ``put_record`` is not robbed; temp
        files are removed only when their writer is gone.
        """
        removed = 0
        referenced: set[str] = set()
        for signature in self._record_signatures():
            if signature not in keep:
                if self.remove_record(signature):
                    removed += 1
                continue
            record, _problem = self._load_record(signature)
            if record is None:
                # A corrupt or blob-less record can never be served; drop it as well.
                if self.remove_record(signature):
                    removed += 1
                continue
            referenced.update(artifact.sha256 for artifact in record.artifacts)
        now = time.time()
        digests, temps = self._scan()
        for digest in digests:
            if digest in referenced:
                continue
            path = self.cas_dir / digest[:2] / digest
            try:
                if grace_seconds > 0 and now - path.stat().st_mtime < grace_seconds:
                    continue
                path.unlink()
                removed += 1
            except FileNotFoundError:
                continue
        for tmp in temps:
            if self._tmp_abandoned(tmp):
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                    removed += 1
        return removed

    # -- index -----------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.index_path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS records ("
            " signature TEXT PRIMARY KEY, name TEXT NOT NULL, version TEXT NOT NULL,"
            " created TEXT NOT NULL, components TEXT NOT NULL)"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS records_name ON records (name, version)")
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        # Cheap integrity probe: a damaged file usually fails here rather than later.
        conn.execute("SELECT count(*) FROM records").fetchone()
        return conn

    def _discard_index(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.index_path}{suffix}")

    def _open_index(self) -> sqlite3.Connection:
        """Connect, waiting out other processes that hold the schema or mode lock."""
        deadline = time.monotonic() + 60
        while True:
            try:
                return self._connect()
            except sqlite3.OperationalError as exc:
                # Switching to WAL can report "locked" without using the busy handler.
                if _is_corruption(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _index(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = self._open_index()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise StoreError(f"cannot open index: {exc}", file=self.index_path) from None
            log.warning("store index %s is unusable (%s); rebuilding it", self.index_path, exc)
            self._discard_index()
            try:
                conn = self._open_index()
            except sqlite3.DatabaseError as exc2:
                raise StoreError(f"cannot open index: {exc2}", file=self.index_path) from None
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
            need_reconcile = not self._reconciled
            self._reconciled = True
        if need_reconcile:
            self._run(lambda: self._reconcile(self._index()))
        return conn

    def _run(self, action: Callable[[], _T]) -> _T:
        try:
            return action()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise StoreError(f"index failed: {exc}", file=self.index_path) from None
            # Corruption found mid-use: the index is derived, so rebuild and retry once.
            log.warning("store index %s failed (%s); rebuilding it", self.index_path, exc)
            self.close()
            self._discard_index()
            with self._lock:
                self._reconciled = False
            try:
                return action()
            except sqlite3.DatabaseError as exc2:
                raise StoreError(
                    f"index failed after rebuild: {exc2}", file=self.index_path
                ) from None

    def _reconcile(self, conn: sqlite3.Connection) -> None:
        """Make the index match ``ac/``: add records it lacks, drop rows whose file is gone.

        Runs once per store object; it is what makes a deleted or stale index harmless
        (a process killed between writing a record and indexing it is caught here).
        """
        on_disk = set(self._record_signatures())
        conn.execute("BEGIN IMMEDIATE")
        try:
            indexed = {row[0] for row in conn.execute("SELECT signature FROM records")}
            for signature in indexed - on_disk:
                conn.execute("DELETE FROM records WHERE signature = ?", (signature,))
            for signature in on_disk - indexed:
                self._upsert_from_file(conn, signature)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                (str(_INDEX_SCHEMA),),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _upsert_from_file(self, conn: sqlite3.Connection, signature: str) -> None:
        path = self._record_file(signature)
        try:
            record = ActionRecord.from_bytes(path.read_bytes())
        except FileNotFoundError:
            conn.execute("DELETE FROM records WHERE signature = ?", (signature,))
            return
        except (OSError, StoreError) as exc:
            log.warning("not indexing %s: %s", path, exc)
            conn.execute("DELETE FROM records WHERE signature = ?", (signature,))
            return
        if record.signature != signature:
            log.warning("not indexing %s: it holds the record of %s", path, record.signature)
            conn.execute("DELETE FROM records WHERE signature = ?", (signature,))
            return
        self._upsert(conn, record)

    def _still_inode(self, signature: str, inode: int) -> bool:
        try:
            return self._record_file(signature).stat().st_ino == inode
        except FileNotFoundError:
            return False

    @staticmethod
    def _upsert(conn: sqlite3.Connection, record: ActionRecord) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO records (signature, name, version, created, components)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                record.signature,
                canonicalize_name(record.name),
                record.version,
                record.created,
                json.dumps(record.component_digests(), sort_keys=True),
            ),
        )

    def _index_from_file(self, signature: str) -> None:
        """Set the index row of ``signature`` from its record file, under the write lock."""
        self._index_from_files([signature])

    def _index_from_files(
        self,
        signatures: Sequence[str],
        known: Mapping[str, tuple[int, ActionRecord]] | None = None,
    ) -> None:
        """Set the index rows of ``signatures`` from their record files, in one transaction.

        Reading the files inside the exclusive transaction means the last indexer sees the
        last file written, so concurrent writers of one signature leave index and file equal.
        ``known`` maps a signature to the inode and record this process just renamed into
        place: while the entry is still that inode (one stat) the record is used as it is,
        without reading the file back.
        """

        def action() -> None:
            conn = self._index()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for signature in signatures:
                    mine = (known or {}).get(signature)
                    if mine is not None and self._still_inode(signature, mine[0]):
                        self._upsert(conn, mine[1])
                    else:
                        self._upsert_from_file(conn, signature)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self._run(action)
