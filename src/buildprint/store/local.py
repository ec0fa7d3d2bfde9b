"""The embedded local store: content-addressed blobs and action-cache records, with their index."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from buildprint.errors import CorruptBlob, StoreError
from buildprint.fsio import (
    can_sync_filesystem,
    copy_hashing,
    fsync_dir,
    fsync_file,
    sync_filesystem,
)
from buildprint.store import maintenance
from buildprint.store.index import IndexEntry, RecordIndex
from buildprint.store.record import ActionRecord, is_digest

__all__ = ["LocalStore", "StagedRecord", "record_of"]

log = logging.getLogger("buildprint.store")

_CHUNK = 1 << 20
#: From this many files to flush at once, one syncfs(2) beats an fsync each.
_SYNCFS_FROM = 4


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


class LocalStore:
    """A store rooted at ``root``; safe for several threads and processes at once.

    Layout: ``cas/<2 hex>/<64 hex>`` blobs, ``ac/<signature>.json`` records,
    ``index.sqlite`` (derived, rebuilt from ``ac/`` when missing or corrupt),
    ``tmp/`` for in-flight writes. The files are the truth; the index (``RecordIndex``) only
    speeds up queries by name. ``verify`` and ``gc`` are in ``store.maintenance``.
    """

    def __init__(self, root: Path, *, flush_in_batches: bool | None = None) -> None:
        self.root = Path(root)
        self.cas_dir = self.root / "cas"
        self.ac_dir = self.root / "ac"
        self.tmp_dir = self.root / "tmp"
        self.quarantine_dir = self.root / "quarantine"
        self.index_path = self.root / "index.sqlite"
        try:
            for folder in (self.cas_dir, self.ac_dir, self.tmp_dir):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create store: {exc}", file=self.root) from None
        self._index = RecordIndex(
            self.index_path,
            # Functions of the folder, not bound methods: the index holds no reference to the
            # store, so a store dropped without ``close`` still closes its connections at once.
            signatures=functools.partial(_signatures_in, self.ac_dir),
            record_file=functools.partial(_record_file_in, self.ac_dir),
        )
        #: Flush in batches: one syncfs(2) for the whole store (Linux, one filesystem); by
        #: default wherever that works.
        if flush_in_batches is None:
            flush_in_batches = can_sync_filesystem() and self._on_one_filesystem()
        self._flush_in_batches = flush_in_batches
        #: Signatures whose broken entry was warned about already (one warning each).
        self._warned: set[str] = set()
        self._warned_lock = threading.Lock()

    def _on_one_filesystem(self) -> bool:
        folders = (self.cas_dir, self.ac_dir, self.tmp_dir)
        try:
            return len({os.stat(folder).st_dev for folder in folders}) == 1
        except OSError:
            return False

    # -- lifecycle -------------------------------------------------------------------

    def close(self) -> None:
        """Close every index connection this object opened (in any thread)."""
        self._index.close()

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

    def record_path(self, signature: str) -> Path:
        """The file holding ``signature``'s record (whose state a plan snapshot re-checks)."""
        return _record_file_in(self.ac_dir, signature)

    def new_tmp_path(self, digest: str | None = None) -> Path:
        """A fresh, unused temp name in the store (same filesystem as the CAS); nothing is
        created. With ``digest``, the name is in the CAS folder that blob belongs in, so that
        storing it is a rename within one folder: download a blob there (``Remote.get_blob``)
        and hand it to ``put_records(..., blobs=)``. The name carries host and pid, so ``gc``
        removes it (and any ``.<name>.*.part`` beside it) only once its writer is gone.
        """
        folder = self.tmp_dir if digest is None else self._blob_file(digest).parent
        return folder / maintenance.temp_name()

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
        held = _holds(dest, digest, tmp.stat().st_size)
        if held:
            # Already stored: keep the existing bytes and refresh its age so a concurrent
            # gc with a grace period does not take it while a record is being written.
            tmp.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                os.utime(dest)
            return
        if held is not None:
            # Damaged (other bytes under this name): out of the way, then these take its place.
            moved = self._quarantine(dest)
            log.warning(
                "blob %s in the store was damaged; moved to %s and stored again", digest, moved
            )
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

    def copy_blob(self, digest: str, dest: Path, *, size: int | None = None) -> str:
        """Write the blob's bytes to ``dest`` (created or truncated), checking them while
        copying (one pass); return the digest, which is then ``digest``.

        A blob that is missing, or whose bytes do not hash to its name (or are not ``size``
        long, when given) raises ``CorruptBlob``: ``dest`` is removed and a damaged blob is
        moved (renamed) to ``quarantine/<digest>.<time>``, so the store no longer serves it
        and a later ``put_blob`` or fetch stores it again.
        """
        blob = self._blob_file(digest)
        try:
            source = open(blob, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise CorruptBlob(digest, "is missing from the store", file=blob) from None
        except OSError as exc:
            raise StoreError(f"cannot read blob {digest}: {exc.strerror}", file=blob) from None
        with source:
            try:
                with open(dest, "wb") as out:
                    got, length = copy_hashing(source, out)
            except BaseException:
                dest.unlink(missing_ok=True)
                raise
            if got == digest and (size is None or length == size):
                return got
            dest.unlink(missing_ok=True)
            if size is not None and length != size:
                problem = f"is truncated or padded: {length} bytes, expected {size}"
            else:
                problem = f"is corrupt: its {length} bytes hash to {got}"
            moved = self._quarantine(blob, os.fstat(source.fileno()).st_ino)
        where = f"; moved to {moved}" if moved else ""
        raise CorruptBlob(digest, problem + where, file=blob)

    def _quarantine(self, blob: Path, inode: int | None = None) -> Path | None:
        """Move a damaged blob out of the CAS to ``quarantine/<digest>.<time>`` (one rename);
        where it went, or None if it was gone (or, given ``inode``, already replaced by
        another file: a concurrent repair is left alone)."""
        target = self.quarantine_dir / f"{blob.name}.{time.time_ns()}"
        try:
            if inode is not None and blob.stat().st_ino != inode:
                return None
            try:
                os.rename(blob, target)
            except FileNotFoundError:
                if not blob.exists():
                    return None
                self.quarantine_dir.mkdir(exist_ok=True)
                os.rename(blob, target)
        except FileNotFoundError:
            return None
        fsync_dir(blob.parent)
        return target

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
        return self.record_path(signature).is_file()

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
                os.replace(item.tmp, self.record_path(item.record.signature))
            fsync_dir(self.ac_dir)
        finally:
            for item in temps:
                item.discard()
        self._index.refresh(
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

    def read_record(self, signature: str) -> tuple[ActionRecord | None, str | None]:
        """Read and check one record: (record, None), (None, problem) or (None, None) if absent.

        The check is ``get_record``'s (valid, its own signature, every blob there with its
        size), without logging or repairing: ``verify`` and ``gc`` report or act on the
        problem instead.
        """
        record, problem, _short = self._read(signature)
        return record, problem

    def _read(self, signature: str) -> tuple[ActionRecord | None, str | None, str | None]:
        """``read_record``, and the digest of a blob whose size is not the record's."""
        path = self.record_path(signature)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, None, None
        except OSError as exc:
            return None, f"{path}: unreadable record: {exc.strerror}", None
        try:
            record = ActionRecord.from_bytes(data)
        except StoreError as exc:
            return None, f"{path}: corrupt record: {exc.message}", None
        if record.signature != signature:
            return None, f"{path}: corrupt record: it is for signature {record.signature}", None
        for artifact in record.artifacts:
            blob = self._blob_file(artifact.sha256)
            what = (
                f"{path}: {record.name} {record.version}: "
                f"blob {artifact.sha256} ({artifact.filename})"
            )
            try:
                size = blob.stat().st_size
            except FileNotFoundError:
                return None, f"{what} is missing", None
            if size != artifact.size:
                problem = f"{what} has {size} bytes, record says {artifact.size}"
                return None, problem, artifact.sha256
        return record, None, None

    def get_record(self, signature: str) -> ActionRecord | None:
        """The valid record for ``signature``, or None.

        A corrupt record or one whose blobs are gone is reported with ``logging.warning``
        (once per signature and store object) and treated as absent; blobs are checked by
        stat (presence and size), not rehashed. A blob whose size is not the record's
        (truncated) is moved to ``quarantine/`` unless its bytes do match its name (the
        record is the broken part then), so it is stored again by the next build or fetch.
        """
        record, problem, short = self._read(signature)
        if problem is None:
            return record
        if short is not None:
            blob = self._blob_file(short)
            if _holds(blob, short, _size(blob)) is False:
                moved = self._quarantine(blob)
                if moved is not None:
                    problem += f"; moved to {moved}"
        with self._warned_lock:
            first = signature not in self._warned
            self._warned.add(signature)
        if first:
            log.warning("ignoring store entry: %s", problem)
        return None

    def get_records(self, signatures: Iterable[str]) -> dict[str, ActionRecord]:
        """Valid records for the given signatures, keyed by signature (absent ones left out)."""
        found: dict[str, ActionRecord] = {}
        for signature in dict.fromkeys(signatures):
            record = self.get_record(signature)
            if record is not None:
                found[signature] = record
        return found

    def record_signatures(self) -> list[str]:
        """The signatures of every record file in ``ac/``, sorted; nothing is read or checked."""
        return _signatures_in(self.ac_dir)

    def records(self) -> Iterator[ActionRecord]:
        """Every valid record, in signature order (invalid ones are warned about and skipped)."""
        for signature in self.record_signatures():
            record = self.get_record(signature)
            if record is not None:
                yield record

    def remove_record(self, signature: str) -> bool:
        """Delete the record (blobs stay until ``gc``); return True if there was one."""
        path = self.record_path(signature)
        try:
            path.unlink()
            existed = True
        except FileNotFoundError:
            existed = False
        self._index.refresh([signature])
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
                    self._index.refresh([signature])
        return [records[entry.signature] for entry in entries if entry.signature in records]

    def index_entries(self, name: str, version: str | None = None) -> list[IndexEntry]:
        """Index rows for ``name`` (newest first), for ranking without reading records."""
        return self._index.entries(name, version)

    def resolve_signature(self, abbreviation: str) -> str:
        """The stored signature ``abbreviation`` (a unique prefix) names; ``InputError`` when
        it is too short, names none or several (``RecordIndex.resolve``)."""
        return self._index.resolve(abbreviation, file=self.root)

    # -- maintenance -----------------------------------------------------------------

    def verify(self) -> list[str]:
        """Rehash everything; return problems, empty when the store is sound
        (``maintenance.verify``: corrupt, truncated and missing blobs, broken records and
        index entries, stray temp files and orphaned temp folders). Nothing changes."""
        return maintenance.verify(self)

    def gc(
        self,
        keep: AbstractSet[str],
        *,
        grace_seconds: float = 0.0,
        unused_seconds: float = maintenance.UNUSED_SECONDS,
        keep_commits: AbstractSet[str] | None = None,
    ) -> int:
        """Drop records not in ``keep``, blobs no kept record uses (unless younger than
        ``grace_seconds``), damaged blobs (quarantined), abandoned temp files and folders,
        stale locks, unused build environments and git checkouts; return how many files and
        folders went (``maintenance.gc``)."""
        return maintenance.gc(
            self,
            keep,
            grace_seconds=grace_seconds,
            unused_seconds=unused_seconds,
            keep_commits=keep_commits,
        )


def _hash_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1


def _holds(path: Path, digest: str, size: int) -> bool | None:
    """Whether the blob file at ``path`` holds exactly the bytes named ``digest`` (``size``
    of them), None if there is no such file: a stat, and a rehash only when the size is
    right (so a put of a new wheel, the usual case, reads nothing)."""
    try:
        if path.stat().st_size != size:
            return False
        return _hash_file(path) == digest
    except FileNotFoundError:
        return None
    except OSError:
        return False


def _record_file_in(ac_dir: Path, signature: str) -> Path:
    """``ac/<signature>.json``; ``StoreError`` unless ``signature`` is a digest (it names a
    file, so anything else could walk out of the store)."""
    if not is_digest(signature):
        raise StoreError(f"{signature!r} is not a signature", file=ac_dir.parent)
    return ac_dir / f"{signature}.json"


def _signatures_in(ac_dir: Path) -> list[str]:
    """The signatures of the record files in ``ac_dir``, sorted."""
    out: list[str] = []
    try:
        entries = os.scandir(ac_dir)
    except FileNotFoundError:
        return out
    with entries:
        for entry in entries:
            stem, dot, ext = entry.name.rpartition(".")
            if dot and ext == "json" and is_digest(stem):
                out.append(stem)
    out.sort()
    return out
