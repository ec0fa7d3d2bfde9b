"""The store's SQLite index of records by name: derived from ``ac/``, rebuilt when damaged."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

from packaging.utils import canonicalize_name

from buildprint.errors import InputError, StoreError
from buildprint.store.record import ActionRecord

__all__ = [
    "LISTED_CANDIDATES",
    "MIN_ABBREVIATION",
    "PREFIX_COUNT",
    "PREFIX_QUERY",
    "IndexEntry",
    "RecordIndex",
    "reads_as_signature",
]

log = logging.getLogger("buildprint.store")

_T = TypeVar("_T")

_SCHEMA = 1

#: The rows whose signature lies in [?, ?), in order, at most ? of them: a prefix lookup
#: (:meth:`RecordIndex.with_prefix`), answered from the primary key's index.
PREFIX_QUERY = (
    "SELECT signature, name, version, created, components FROM records"
    " WHERE signature >= ? AND signature < ? ORDER BY signature LIMIT ?"
)
#: How many rows :data:`PREFIX_QUERY`'s range holds, from the same index.
PREFIX_COUNT = "SELECT count(*) FROM records WHERE signature >= ? AND signature < ?"
#: The fewest hex digits an abbreviated signature may have (git's minimum too).
MIN_ABBREVIATION = 4
#: How many candidates the error for an ambiguous abbreviation lists.
LISTED_CANDIDATES = 10
#: Digits of each candidate's signature the error shows (more when they agree on as many).
_SHOWN_DIGITS = 12
_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class IndexEntry:
    """One row of the index: enough to rank candidates without reading record files."""

    signature: str
    name: str
    version: str
    created: str
    components: dict[str, str]


def reads_as_signature(text: str) -> bool:
    """Whether ``text`` is written like a signature or an abbreviation of one: at most 64
    hex digits, either case (:meth:`RecordIndex.resolve` says when there are too few)."""
    return 0 < len(text) <= 64 and _HEX.fullmatch(text.lower()) is not None


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """True for a damaged index file, as opposed to contention or a programming error."""
    text = str(exc).lower()
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return True
    # Plain DatabaseError (not Operational/Integrity/...) is what SQLite's damage codes map to.
    return type(exc) is sqlite3.DatabaseError


class RecordIndex:
    """The index at ``path`` of the record files that ``signatures`` lists and ``record_file``
    names; safe for several threads (one connection each) and processes (WAL, busy timeout).

    The files are the truth: the first use reconciles the index with them (rows added for
    records it lacks, rows dropped for records gone), and an index found missing or damaged,
    when opened or mid-use, is discarded and rebuilt from them.
    """

    def __init__(
        self,
        path: Path,
        *,
        signatures: Callable[[], list[str]],
        record_file: Callable[[str], Path],
    ) -> None:
        self.path = path
        self._signatures = signatures
        self._record_file = record_file
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._reconciled = False

    def close(self) -> None:
        """Close every connection this object opened (in any thread)."""
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()

    # -- queries and updates -----------------------------------------------------------

    def entries(self, name: str, version: str | None = None) -> list[IndexEntry]:
        """Rows for ``name`` (PEP 503-normalized), optionally one version; newest first."""
        query = "SELECT signature, name, version, created, components FROM records WHERE name = ?"
        params: list[str] = [canonicalize_name(name)]
        if version is not None:
            query += " AND version = ?"
            params.append(version)
        query += " ORDER BY created DESC, signature"
        rows = self._run(lambda: self._connection().execute(query, params).fetchall())
        return [_entry(row) for row in rows]

    def with_prefix(self, prefix: str, limit: int = 11) -> tuple[list[IndexEntry], int]:
        """Rows whose signature starts with ``prefix`` (lowercase hex), at most ``limit`` of
        them in signature order, and how many there are in all.

        :data:`PREFIX_QUERY` is a range on the primary key's index
        (``prefix <= signature < prefix + "g"``: every character after the prefix is a hex
        digit, and each is below ``g``), never a table scan, so resolving a short signature
        costs about the same in a store of a million records.
        """
        if not prefix or any(c not in "0123456789abcdef" for c in prefix):
            raise ValueError(f"{prefix!r} is not a lowercase hex prefix")
        bounds = (prefix, prefix + "g")

        def query() -> tuple[list[tuple[str, str, str, str, str]], int]:
            conn = self._connection()
            rows = conn.execute(PREFIX_QUERY, (*bounds, limit)).fetchall()
            total = len(rows)
            if total >= limit:
                total = conn.execute(PREFIX_COUNT, bounds).fetchone()[0]
            return rows, total

        rows, total = self._run(query)
        return [_entry(row) for row in rows], total

    def resolve(self, abbreviation: str, *, file: str | Path | None = None) -> str:
        """The one indexed signature that starts with ``abbreviation`` (hex, either case), as
        git takes a short hash for the commit it names.

        ``InputError`` (at ``file``) when the abbreviation has fewer than
        :data:`MIN_ABBREVIATION` digits or is not hex, when no record's signature starts
        with it, or when several do: that error lists up to :data:`LISTED_CANDIDATES` of
        them (name, version, the first 12 digits, or as many as tell them apart), by
        signature.
        """
        prefix = abbreviation.lower()
        if _HEX.fullmatch(prefix) is None or len(prefix) > 64:
            raise InputError(f"{abbreviation!r} is not a signature (hex digits)", file=file)
        if len(prefix) < MIN_ABBREVIATION:
            raise InputError(
                f"signature abbreviation {abbreviation!r} is too short: give at least "
                f"{MIN_ABBREVIATION} hex digits",
                file=file,
            )
        entries, total = self.with_prefix(prefix, LISTED_CANDIDATES + 1)
        if total == 0:
            raise InputError(f"no stored build has a signature starting with {prefix}", file=file)
        if total == 1:
            return entries[0].signature
        shown = entries[:LISTED_CANDIDATES]
        agree = max(_shared(a.signature, b.signature) for a, b in pairwise(shown))
        digits = max(_SHOWN_DIGITS, agree + 1)
        lines = [f"  {e.name} {e.version} {e.signature[:digits]}" for e in shown]
        if total > len(shown):
            lines.append(f"  … and {total - len(shown)} more")
        raise InputError(
            f"signature abbreviation {prefix} is ambiguous: {total} stored builds start "
            "with it (give more digits):\n" + "\n".join(lines),
            file=file,
        )

    def refresh(
        self,
        signatures: Sequence[str],
        known: Mapping[str, tuple[int, ActionRecord]] | None = None,
    ) -> None:
        """Set the rows of ``signatures`` from their record files, in one transaction.

        Reading the files inside the exclusive transaction means the last indexer sees the
        last file written, so concurrent writers of one signature leave index and file equal.
        ``known`` maps a signature to the inode and record this process just renamed into
        place: while the entry is still that inode (one stat) the record is used as it is,
        without reading the file back.
        """

        def action() -> None:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                for signature in signatures:
                    mine = (known or {}).get(signature)
                    if mine is not None and self._still_inode(signature, mine[0]):
                        _upsert(conn, mine[1])
                    else:
                        self._upsert_from_file(conn, signature)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self._run(action)

    def check(self, records: Mapping[str, ActionRecord]) -> list[str]:
        """Problems of the index file against ``records`` (the valid records on disk, by
        signature), changing nothing: a damaged file, rows for records that are gone or
        broken, rows that say something else than their record. Records without a row are
        not problems (a writer killed before indexing; the next use adds them). A missing
        index is not a problem either: it is made again when first used."""
        if not self.path.exists():
            return []
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.DatabaseError as exc:
            return [f"{self.path}: damaged index: {exc}"]
        try:
            conn.execute("PRAGMA busy_timeout = 30000")
            verdict = [row[0] for row in conn.execute("PRAGMA quick_check")]
            if verdict != ["ok"]:
                return [f"{self.path}: damaged index: {'; '.join(map(str, verdict[:3]))}"]
            rows = conn.execute(
                "SELECT signature, name, version, created, components FROM records"
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            return [f"{self.path}: damaged index: {exc}"]
        finally:
            conn.close()
        problems = []
        for signature, name, version, created, components in rows:
            record = records.get(signature)
            if record is None:
                problems.append(
                    f"{self.path}: broken index entry {signature}: its record is gone or broken"
                )
                continue
            try:
                listed = json.loads(components)
            except (TypeError, ValueError):
                listed = None
            if (name, version, created, listed) != (
                canonicalize_name(record.name),
                record.version,
                record.created,
                record.component_digests(),
            ):
                problems.append(
                    f"{self.path}: broken index entry {signature}: it does not match its record"
                )
        return problems

    def resync(self) -> None:
        """Set every row from the record files again (rows of records gone or broken are
        dropped; a damaged file is rebuilt): what ``gc`` does after ``check`` found
        problems."""

        def action() -> None:
            conn = self._connection()
            on_disk = set(self._signatures())
            conn.execute("BEGIN IMMEDIATE")
            try:
                indexed = {row[0] for row in conn.execute("SELECT signature FROM records")}
                for signature in indexed - on_disk:
                    conn.execute("DELETE FROM records WHERE signature = ?", (signature,))
                for signature in sorted(on_disk):
                    self._upsert_from_file(conn, signature)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self._run(action)

    # -- connections -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
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

    def _discard(self) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def _open(self) -> sqlite3.Connection:
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

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection; the first one of this object reconciles the index."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None:
            return conn
        try:
            conn = self._open()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise StoreError(f"cannot open index: {exc}", file=self.path) from None
            log.warning("store index %s is unusable (%s); rebuilding it", self.path, exc)
            self._discard()
            try:
                conn = self._open()
            except sqlite3.DatabaseError as exc2:
                raise StoreError(f"cannot open index: {exc2}", file=self.path) from None
        self._local.conn = conn
        with self._lock:
            self._connections.append(conn)
            need_reconcile = not self._reconciled
            self._reconciled = True
        if need_reconcile:
            self._run(lambda: self._reconcile(self._connection()))
        return conn

    def _run(self, action: Callable[[], _T]) -> _T:
        try:
            return action()
        except sqlite3.DatabaseError as exc:
            if not _is_corruption(exc):
                raise StoreError(f"index failed: {exc}", file=self.path) from None
            # Corruption found mid-use: the index is derived, so rebuild and retry once.
            log.warning("store index %s failed (%s); rebuilding it", self.path, exc)
            self.close()
            self._discard()
            with self._lock:
                self._reconciled = False
            try:
                return action()
            except sqlite3.DatabaseError as exc2:
                raise StoreError(f"index failed after rebuild: {exc2}", file=self.path) from None

    # -- rows from files ---------------------------------------------------------------

    def _reconcile(self, conn: sqlite3.Connection) -> None:
        """Make the index match ``ac/``: add records it lacks, drop rows whose file is gone.

        Runs once per index object; it is what makes a deleted or stale index harmless
        (a process killed between writing a record and indexing it is caught here).
        """
        on_disk = set(self._signatures())
        conn.execute("BEGIN IMMEDIATE")
        try:
            indexed = {row[0] for row in conn.execute("SELECT signature FROM records")}
            for signature in indexed - on_disk:
                conn.execute("DELETE FROM records WHERE signature = ?", (signature,))
            for signature in on_disk - indexed:
                self._upsert_from_file(conn, signature)
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)",
                (str(_SCHEMA),),
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
        _upsert(conn, record)

    def _still_inode(self, signature: str, inode: int) -> bool:
        try:
            return self._record_file(signature).stat().st_ino == inode
        except FileNotFoundError:
            return False


def _shared(a: str, b: str) -> int:
    """How many leading characters two signatures share."""
    length = 0
    for x, y in zip(a, b, strict=True):
        if x != y:
            break
        length += 1
    return length


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


def _entry(row: Sequence[Any]) -> IndexEntry:
    """An index row (signature, name, version, created, components) as an entry."""
    return IndexEntry(
        signature=row[0], name=row[1], version=row[2], created=row[3], components=json.loads(row[4])
    )
