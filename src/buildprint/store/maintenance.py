"""Store upkeep: ``verify`` and ``gc``, and the temp names that tell them whose write a file is."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Set
from pathlib import Path
from typing import TYPE_CHECKING

from buildprint.errors import StoreError
from buildprint.fsio import HOST, abandoned, owner_tag, remove_unlocked
from buildprint.store.record import ActionRecord, Artifact, is_digest

if TYPE_CHECKING:
    from buildprint.store.local import LocalStore

__all__ = ["UNUSED_SECONDS", "gc", "temp_name", "verify"]

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


def gc(
    store: LocalStore,
    keep: Set[str],
    *,
    grace_seconds: float = 0.0,
    unused_seconds: float = UNUSED_SECONDS,
    keep_commits: Set[str] | None = None,
) -> int:
    """Collect the store's garbage; return the number of files and folders removed.

    - blobs whose bytes do not hash to their name are moved to ``quarantine/`` (and the
      records using them dropped, below); quarantined blobs older than ``unused_seconds``
      are deleted;
    - records whose signature is not in ``keep``, and records that are broken, are removed;
      the index is set from the records again if it does not match them;
    - blobs no kept record uses are removed, unless younger than ``grace_seconds`` (so a
      concurrent writer between ``put_blob`` and ``put_record`` is not robbed);
    - temp files and temp folders (``work/``) whose writer is gone;
    - ``locks/*.lock`` no process holds, last taken more than ``grace_seconds`` ago;
    - build environments (``envs/``) no live process holds and unused for
      ``unused_seconds``, half-made ones older than ``grace_seconds``
      (``EnvironmentPool.remove_unused``);
    - git checkouts (``sources/git/<commit>``) not in ``keep_commits`` (when given) and
      not read for ``unused_seconds``, and abandoned partial checkouts.
    """
    removed = 0
    now = time.time()
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
            removed += 1
    referenced: set[str] = set()
    valid: dict[str, ActionRecord] = {}
    for signature in store.record_signatures():
        if signature not in keep:
            if store.remove_record(signature):
                removed += 1
            continue
        record, _problem = store.read_record(signature)
        if record is None:
            # A corrupt or blob-less record can never be served; drop it as well.
            if store.remove_record(signature):
                removed += 1
            continue
        valid[signature] = record
        referenced.update(artifact.sha256 for artifact in record.artifacts)
    if store._index.check(valid):
        store._index.resync()
    for digest in digests:
        if digest in referenced:
            continue
        path = _blob(store, digest)
        try:
            if grace_seconds > 0 and now - path.stat().st_mtime < grace_seconds:
                continue
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
    for tmp in temps:
        if _abandoned(tmp):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed += 1
    for folder in _orphaned_folders(store):
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    with contextlib.suppress(FileNotFoundError):
        for lock in sorted((store.root / "locks").glob("*.lock")):
            removed += remove_unlocked(lock, older_than=grace_seconds)
    from buildprint.builder.environment import EnvironmentPool  # the store's envs/ folder

    removed += len(
        EnvironmentPool.remove_unused(
            store.root / "envs", unused_seconds=unused_seconds, grace_seconds=grace_seconds
        )
    )
    removed += _collect_checkouts(store.root / "sources" / "git", keep_commits, unused_seconds)
    # Quarantined blobs (``<digest>.<time_ns>``) are kept a while, to be looked at.
    with contextlib.suppress(FileNotFoundError):
        for entry in store.quarantine_dir.iterdir():
            stamp = entry.name.rpartition(".")[2]
            moved = int(stamp) / 1e9 if stamp.isdigit() else 0.0
            if now - moved < unused_seconds:
                continue
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
    return removed


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
    try:
        with os.scandir(store.cas_dir) as entries:
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
