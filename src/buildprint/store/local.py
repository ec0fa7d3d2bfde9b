"""The embedded local store: content-addressed blobs and action-cache records, with their index."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from buildprint.errors import StoreError
from buildprint.fsio import can_sync_filesystem, fsync_dir, fsync_file, sync_filesystem
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
        size), without logging: ``verify`` and ``gc`` report or act on the problem instead.
        """
        path = self.record_path(signature)
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
        record, problem = self.read_record(signature)
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

    # -- maintenance -----------------------------------------------------------------

    def verify(self) -> list[str]:
        """Rehash everything; return problems, empty when the store is sound
        (``maintenance.verify``: damaged blobs and records, stray temp files)."""
        return maintenance.verify(self)

    def gc(self, keep: set[str], *, grace_seconds: float = 0.0) -> int:
        """Drop records not in ``keep``, blobs no kept record uses (unless younger than
        ``grace_seconds``) and abandoned temp files; return how many files went
        (``maintenance.gc``)."""
        return maintenance.gc(self, keep, grace_seconds=grace_seconds)


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
