"""Store upkeep: ``verify`` and ``gc``, and the temp names that tell them whose write a file is."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from buildprint.fsio import HOST, abandoned, owner_tag
from buildprint.store.record import is_digest

if TYPE_CHECKING:
    from buildprint.store.local import LocalStore

__all__ = ["gc", "temp_name", "verify"]

_CHUNK = 1 << 20
#: Temp files of other hosts (shared folders) cannot be checked for a live owner; after this
#: long they are taken to be abandoned.
_STALE_TMP_SECONDS = 24 * 3600
#: Temp names: host, pid, this process's random token and a counter (no syscall per name).
_TMP_TOKEN = uuid.uuid4().hex[:12]
_tmp_counter = itertools.count()


def temp_name() -> str:
    """A fresh temp file name, ``<host>.<pid>.<token><n>.tmp``: ``gc`` removes a file so named
    (and any ``.<name>.*.part`` beside it) only once the process that wrote it is gone."""
    return f"{owner_tag()}.{_TMP_TOKEN}{next(_tmp_counter)}.tmp"


def verify(store: LocalStore) -> list[str]:
    """Rehash everything; return problems (empty when the store is sound).

    Reports blobs whose bytes no longer match their digest, records that are corrupt or point
    to missing blobs, and temp files left by interrupted writes.
    """
    problems: list[str] = []
    bad_blobs: set[str] = set()
    digests, temps = _scan(store)
    for digest in digests:
        path = store.cas_dir / digest[:2] / digest
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
    for signature in store.record_signatures():
        record, problem = store.read_record(signature)
        if problem is not None:
            problems.append(problem)
            continue
        assert record is not None
        for artifact in record.artifacts:
            if artifact.sha256 in bad_blobs:
                problems.append(
                    f"{store.record_path(signature)}: blob {artifact.sha256} "
                    f"({artifact.filename}) is damaged"
                )
    for tmp in temps:
        problems.append(f"{tmp}: stray temp file from an interrupted write")
    return problems


def gc(store: LocalStore, keep: set[str], *, grace_seconds: float = 0.0) -> int:
    """Drop records not in ``keep``, blobs no kept record uses, abandoned temp files.

    Returns the number of files removed. Blobs younger than ``grace_seconds`` are kept, so a
    concurrent writer between ``put_blob`` and ``put_record`` is not robbed; temp files are
    removed only when their writer is gone.
    """
    removed = 0
    referenced: set[str] = set()
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
        referenced.update(artifact.sha256 for artifact in record.artifacts)
    now = time.time()
    digests, temps = _scan(store)
    for digest in digests:
        if digest in referenced:
            continue
        path = store.cas_dir / digest[:2] / digest
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
    return removed


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
    return True
