"""Store upkeep: ``verify`` and ``gc``, and the temp names that tell them whose write a file is."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from buildprint.errors import StoreError
from buildprint.fsio import HOST, abandoned, owner_tag, remove_unlocked
from buildprint.store.record import ActionRecord, Artifact, is_digest

if TYPE_CHECKING:
    from buildprint.store.local import LocalStore

__all__ = [
    "UNUSED_SECONDS",
    "GcReport",
    "RemovedRecord",
    "collect_garbage",
    "gc",
    "last_used",
    "mark_used",
    "temp_name",
    "verify",
]

_CHUNK = 1 << 20
#: Temp files of other hosts (shared folders), and temp folders whose names carry no owner,
#: cannot be checked for a live owner; after this long they are taken to be abandoned.
_STALE_TMP_SECONDS = 24 * 3600
#: Build environments and git checkouts unused this long are removed by ``gc`` (they are
#: made again when needed); quarantined blobs are kept this long, to be looked at.
UNUSED_SECONDS = 7 * 24 * 3600
#: Temp names: host, pid, this process's random token and a counter (no syscall per name).
_TMP_TOKEN = uuid.uuid4().hex[:12]
_tmp_counter = itertools.count()
#: ``used/<signature>``: an empty file per record whose mtime is its last use (``mark_used``).
_USED = "used"


def temp_name() -> str:
    """A fresh temp file name, ``<host>.<pid>.<token><n>.tmp``: ``gc`` removes a file so named
    (and any ``.<name>.*.part`` beside it) only once the process that wrote it is gone."""
    return f"{owner_tag()}.{_TMP_TOKEN}{next(_tmp_counter)}.tmp"


def verify(store: LocalStore) -> list[str]:
    """Rehash everything; return problems (empty when the store is sound). Nothing changes.

    Each problem is one line naming the file, starting with what it is: corrupt or
    truncated blobs (bytes that do not hash to their name; truncated when their size is not
    what a record says), records that are corrupt or whose blobs are missing or damaged,
    broken index entries, stray temp files and orphaned temp folders of processes that are
    gone. Temp files of live writers (a build running now) are not problems.
    """
    problems: list[str] = []
    digests, temps = _scan(store)
    parsed = {signature: _parse(store, signature) for signature in store.record_signatures()}
    users: dict[str, list[tuple[ActionRecord, Artifact]]] = {}
    for record in parsed.values():
        if record is None:
            continue
        for artifact in record.artifacts:
            users.setdefault(artifact.sha256, []).append((record, artifact))
    bad_blobs: set[str] = set()
    for digest in digests:
        path = _blob(store, digest)
        try:
            actual, size, _inode = _hash(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            problems.append(f"{path}: unreadable blob: {exc.strerror}")
            bad_blobs.add(digest)
            continue
        if actual == digest:
            continue
        bad_blobs.add(digest)
        expected = {artifact.size for _record, artifact in users.get(digest, ())}
        if expected and size not in expected:
            record, artifact = users[digest][0]
            problems.append(
                f"{path}: truncated blob: {size} bytes, record {record.signature} "
                f"({record.name} {record.version}, {artifact.filename}) says {artifact.size}"
            )
        else:
            problems.append(f"{path}: corrupt blob: content does not match its digest")
    valid: dict[str, ActionRecord] = {}
    for signature in parsed:
        record, problem = store.read_record(signature)
        if problem is not None:
            problems.append(problem)
            continue
        assert record is not None
        valid[signature] = record
        for artifact in record.artifacts:
            if artifact.sha256 in bad_blobs:
                problems.append(
                    f"{store.record_path(signature)}: {record.name} {record.version}: "
                    f"blob {artifact.sha256} ({artifact.filename}) is damaged"
                )
    problems.extend(store._index.check(valid))
    for tmp in temps:
        if _abandoned(tmp):
            problems.append(f"{tmp}: stray temp file from an interrupted write")
    for folder in _orphaned_folders(store):
        problems.append(f"{folder}: orphaned temp folder of a process that is gone")
    return problems


@dataclass(frozen=True)
class RemovedRecord:
    """A record ``gc`` removed, and why: ``broken`` (corrupt, or a blob gone or damaged),
    ``not kept`` (not in ``keep``), ``not current`` (not what the current plan reuses),
    ``unused`` (not used for ``max_age_seconds``) or ``over size`` (least recently used while
    the store was over ``max_size``). ``size`` is what its wheels weigh (shared blobs too)."""

    signature: str
    name: str | None
    version: str | None
    reason: str
    size: int


@dataclass
class GcReport:
    """What ``gc`` removed, and what the store holds after it."""

    #: Records removed (each with its reason), in the order they went.
    records: list[RemovedRecord] = field(default_factory=list)
    #: Blobs removed (no kept record used them, older than the grace period), and their bytes.
    blobs: int = 0
    blob_bytes: int = 0
    #: Bytes of the record files removed.
    record_bytes: int = 0
    #: Damaged blobs moved to ``quarantine/``.
    quarantined: int = 0
    #: Everything else removed: temp files and folders, lock files, build environments, git
    #: checkouts, quarantined blobs past their time.
    other: int = 0
    #: The records kept, and the bytes of records and blobs (``ac/`` and ``cas/``) left.
    kept_records: int = 0
    store_bytes: int = 0
    #: ``max_size``, when one was given (the store may stay over it: see ``collect_garbage``).
    max_size: int | None = None

    @property
    def removed(self) -> int:
        """Files and folders removed (quarantined blobs count): what ``gc`` returns."""
        return self.quarantined + len(self.records) + self.blobs + self.other

    @property
    def bytes(self) -> int:
        """Bytes of the records and blobs removed."""
        return self.record_bytes + self.blob_bytes


def mark_used(store: LocalStore, signatures: Iterable[str]) -> None:
    """Note that the records of ``signatures`` were used now (a build run reused, fetched or
    built them): ``used/<signature>``, an empty file whose mtime is the last use. ``gc``'s
    ``max_age_seconds`` and ``max_size`` go by it (:func:`last_used`). Touching a file of its
    own, never the record's, leaves the record's state (what a plan snapshot checks) as is."""
    folder = store.root / _USED
    for signature in dict.fromkeys(signatures):
        if not is_digest(signature):
            raise StoreError(f"{signature!r} is not a signature", file=store.root)
        marker = folder / signature
        try:
            marker.touch()
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
            marker.touch()


def last_used(store: LocalStore, signature: str) -> float | None:
    """When the record of ``signature`` was last used: the later of its ``used/`` mark
    (:func:`mark_used`) and its record file's mtime (when it was stored or fetched); None if
    there is no record."""
    try:
        stored = store.record_path(signature).stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        used = (store.root / _USED / signature).stat().st_mtime
    except FileNotFoundError:
        used = stored
    return max(stored, used)


def gc(
    store: LocalStore,
    keep: Set[str],
    *,
    grace_seconds: float = 0.0,
    unused_seconds: float = UNUSED_SECONDS,
    keep_commits: Set[str] | None = None,
) -> int:
    """:func:`collect_garbage` keeping the records in ``keep``; the number of files and
    folders removed."""
    return collect_garbage(
        store,
        keep,
        grace_seconds=grace_seconds,
        unused_seconds=unused_seconds,
        keep_commits=keep_commits,
    ).removed


def collect_garbage(
    store: LocalStore,
    keep: Set[str] | None = None,
    *,
    grace_seconds: float = 0.0,
    unused_seconds: float = UNUSED_SECONDS,
    keep_commits: Set[str] | None = None,
    keep_only: Set[str] | None = None,
    max_age_seconds: float | None = None,
    max_size: int | None = None,
    started: float | None = None,
) -> GcReport:
    """Collect the store's garbage; what was removed (:class:`GcReport`).

    - blobs whose bytes do not hash to their name are moved to ``quarantine/`` (and the
      records using them dropped, below); quarantined blobs older than ``unused_seconds``
      are deleted;
    - records that are broken, and (when ``keep`` is given) records not in ``keep``, are
      removed; the index is set from the records again if it does not match them;
    - the limits, in this order, each sparing the records stored since ``started`` (when
      the caller began: its plan; default now), which a build running meanwhile may be
      about to use: records not in ``keep_only`` (when given: what the current plan
      reuses); records not used (:func:`last_used`) for ``max_age_seconds``; then, while
      the records and the blobs that would stay weigh more than ``max_size`` bytes, the
      least recently used record (ties by signature). Blobs younger than ``grace_seconds``
      stay whatever the limits say, so the store can stay over ``max_size``;
    - blobs no kept record uses are removed, unless younger than ``grace_seconds`` (so a
      concurrent writer between ``put_blob`` and ``put_record`` is not robbed); a blob a
      kept record uses is never removed;
    - temp files and temp folders (``work/``) whose writer is gone;
    - ``locks/*.lock`` no process holds, last taken more than ``grace_seconds`` ago;
    - build environments (``envs/``) no live process holds and unused for
      ``unused_seconds``, half-made ones older than ``grace_seconds``
      (``EnvironmentPool.remove_unused``);
    - git checkouts (``sources/git/<commit>``) not in ``keep_commits`` (when given) and
      not read for ``unused_seconds``, and abandoned partial checkouts;
    - ``used/`` marks of records gone.
    """
    report = GcReport(max_size=max_size)
    now = time.time()
    started = now if started is None else started
    digests, temps = _scan(store)
    # Damaged blobs first (rehashed): out of the CAS, so the records using them read as
    # absent below and are dropped; a later build or fetch stores the blob again.
    for digest in digests:
        path = _blob(store, digest)
        try:
            actual: str | None
            actual, _size, inode = _hash(path)
        except FileNotFoundError:
            continue
        except OSError:
            actual, inode = None, None
        if actual != digest and store._quarantine(path, inode) is not None:
            report.quarantined += 1

    def remove(signature: str, record: ActionRecord | None, reason: str) -> None:
        path = store.record_path(signature)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        if record is None:
            record = _parse(store, signature)
        if store.remove_record(signature):
            report.record_bytes += size
            report.records.append(
                RemovedRecord(
                    signature,
                    record.name if record else None,
                    record.version if record else None,
                    reason,
                    sum(a.size for a in record.artifacts) if record else 0,
                )
            )

    valid: dict[str, ActionRecord] = {}
    for signature in store.record_signatures():
        if keep is not None and signature not in keep:
            remove(signature, None, "not kept")
            continue
        record, _problem = store.read_record(signature)
        if record is None:
            # A corrupt or blob-less record can never be served; drop it as well.
            remove(signature, None, "broken")
            continue
        valid[signature] = record
    used = {signature: last_used(store, signature) for signature in valid}
    # Stored since the caller began (a build running now): no limit removes it. File times
    # come from a coarse clock, a tick behind time.time(): a second of slack.
    spared = {s for s, when in used.items() if when is None or when >= started - 1.0}

    def evict(signature: str, reason: str) -> None:
        remove(signature, valid.pop(signature), reason)

    if keep_only is not None:
        for signature in sorted(valid):
            if signature not in keep_only and signature not in spared:
                evict(signature, "not current")
    if max_age_seconds is not None:
        for signature in sorted(valid):
            when = used[signature]
            if signature not in spared and when is not None and now - when > max_age_seconds:
                evict(signature, "unused")
    if max_size is not None:
        _evict_over_size(store, valid, used, spared, digests, max_size, grace_seconds, evict)
    if store._index.check(valid):
        store._index.resync()
    referenced = {digest for record in valid.values() for digest in record.blobs()}
    for digest in digests:
        if digest in referenced:
            continue
        path = _blob(store, digest)
        try:
            st = path.stat()
            if grace_seconds > 0 and now - st.st_mtime < grace_seconds:
                continue
            path.unlink()
            report.blobs += 1
            report.blob_bytes += st.st_size
        except FileNotFoundError:
            continue
    for tmp in temps:
        if _abandoned(tmp):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                report.other += 1
    for folder in _orphaned_folders(store):
        shutil.rmtree(folder, ignore_errors=True)
        report.other += 1
    with contextlib.suppress(FileNotFoundError):
        for lock in sorted((store.root / "locks").glob("*.lock")):
            report.other += remove_unlocked(lock, older_than=grace_seconds)
    from buildprint.builder.environment import EnvironmentPool  # the store's envs/ folder

    report.other += len(
        EnvironmentPool.remove_unused(
            store.root / "envs", unused_seconds=unused_seconds, grace_seconds=grace_seconds
        )
    )
    report.other += _collect_checkouts(store.root / "sources" / "git", keep_commits, unused_seconds)
    # Quarantined blobs (``<digest>.<time_ns>``) are kept a while, to be looked at.
    with contextlib.suppress(FileNotFoundError):
        for entry in store.quarantine_dir.iterdir():
            stamp = entry.name.rpartition(".")[2]
            moved = int(stamp) / 1e9 if stamp.isdigit() else 0.0
            if now - moved < unused_seconds:
                continue
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                report.other += 1
    # Use marks of records gone (bookkeeping: not counted).
    with contextlib.suppress(FileNotFoundError):
        for marker in (store.root / _USED).iterdir():
            if not (is_digest(marker.name) and store.has_record(marker.name)):
                marker.unlink(missing_ok=True)
    report.kept_records = len(store.record_signatures())
    report.store_bytes = _store_bytes(store)
    return report


def _evict_over_size(
    store: LocalStore,
    valid: dict[str, ActionRecord],
    used: dict[str, float | None],
    spared: Set[str],
    digests: list[str],
    max_size: int,
    grace_seconds: float,
    evict: Callable[[str, str], None],
) -> None:
    """Evict least recently used records (not ``spared``) while the records and the blobs
    that would stay (used by a kept record, or younger than ``grace_seconds``) weigh more
    than ``max_size``."""
    now = time.time()
    blob_size: dict[str, int] = {}
    young: set[str] = set()
    for digest in digests:
        with contextlib.suppress(FileNotFoundError):
            st = _blob(store, digest).stat()
            blob_size[digest] = st.st_size
            if grace_seconds > 0 and now - st.st_mtime < grace_seconds:
                young.add(digest)
    users: dict[str, int] = {}
    record_size: dict[str, int] = {}
    for signature, record in valid.items():
        for digest in record.blobs():
            users[digest] = users.get(digest, 0) + 1
        try:
            record_size[signature] = store.record_path(signature).stat().st_size
        except FileNotFoundError:
            record_size[signature] = 0
    total = sum(record_size.values()) + sum(
        size for digest, size in blob_size.items() if users.get(digest) or digest in young
    )
    candidates = sorted((s for s in valid if s not in spared), key=lambda s: (used[s] or 0.0, s))
    for signature in candidates:
        if total <= max_size:
            break
        total -= record_size[signature]
        for digest in valid[signature].blobs():
            users[digest] -= 1
            if users[digest] == 0 and digest not in young:
                total -= blob_size.get(digest, 0)
        evict(signature, "over size")


def _store_bytes(store: LocalStore) -> int:
    """The bytes of the record files and blobs (``ac/``, ``cas/``) in the store now."""
    total = 0
    for folder in [str(store.ac_dir), *_shards(store)]:
        with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
    return total


def _shards(store: LocalStore) -> list[str]:
    try:
        with os.scandir(store.cas_dir) as entries:
            return sorted(e.path for e in entries if e.is_dir())
    except FileNotFoundError:
        return []


def _collect_checkouts(root: Path, keep: Set[str] | None, unused_seconds: float) -> int:
    """Remove git checkouts not in ``keep`` unused for ``unused_seconds`` (the folder's
    atime is renewed when it is read, at least daily under ``relatime``; its mtime when it
    was made), and partial checkouts (``.tmp-*``) older than a day; how many."""
    removed = 0
    now = time.time()
    try:
        entries = sorted(root.iterdir())
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            st = entry.stat()
        except FileNotFoundError:
            continue
        if entry.name.startswith(".tmp-"):
            gone = now - st.st_mtime > _STALE_TMP_SECONDS
        else:
            last = max(st.st_atime, st.st_mtime)
            gone = (keep is None or entry.name not in keep) and now - last > unused_seconds
        if gone:
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


def _orphaned_folders(store: LocalStore) -> Iterator[Path]:
    """Folders in ``work/`` left by processes that are gone: those named by owner
    (``<host>.<pid>.<what>.<token>``: build trees, lock scratch, the process temp folder)
    whose process ended, and anonymous ``tmp*`` ones (older releases, other tools) older
    than a day."""
    now = time.time()
    try:
        entries = sorted(os.scandir(store.root / "work"), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if abandoned(entry.name):
            yield Path(entry.path)
        elif entry.name.startswith("tmp"):
            with contextlib.suppress(FileNotFoundError):
                if now - entry.stat().st_mtime > _STALE_TMP_SECONDS:
                    yield Path(entry.path)


def _blob(store: LocalStore, digest: str) -> Path:
    return store.cas_dir / digest[:2] / digest


def _parse(store: LocalStore, signature: str) -> ActionRecord | None:
    """The record file of ``signature`` parsed (blobs not checked), None if unreadable."""
    try:
        return ActionRecord.from_bytes(store.record_path(signature).read_bytes())
    except (OSError, StoreError):
        return None


def _hash(path: Path) -> tuple[str, int, int]:
    """The sha256 of the file at ``path``, its size and the inode it was read from."""
    hasher = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        inode = os.fstat(handle.fileno()).st_ino
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
            size += len(chunk)
    return hasher.hexdigest(), size, inode


def _scan(store: LocalStore) -> tuple[list[str], list[Path]]:
    """One pass over the store's folders: the blob digests in ``cas/``, and the temp files
    (everything in ``tmp/``, and non-digest names in CAS folders: fetch downloads)."""
    digests: list[str] = []
    temps: list[Path] = []
    with contextlib.suppress(FileNotFoundError):
        temps.extend(p for p in store.tmp_dir.iterdir() if p.is_file())
    for shard in _shards(store):
        with os.scandir(shard) as entries:
            for entry in entries:
                if is_digest(entry.name):
                    digests.append(entry.name)
                else:
                    temps.append(Path(entry.path))
    return sorted(digests), sorted(temps)


def _abandoned(path: Path) -> bool:
    """True if no live writer can still own this temp file."""
    # A ``temp_name()``, or a download's ".<that>.<token><n>.part" beside it.
    parts = path.name.lstrip(".").split(".")
    if len(parts) >= 4 and parts[0] == HOST and parts[1].isdigit():
        return abandoned(path.name)
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return False
    return age > _STALE_TMP_SECONDS
