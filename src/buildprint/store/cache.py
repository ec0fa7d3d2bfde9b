"""RemoteCache: look up, fetch and publish action records across remotes, verifying everything.

A record is used only if a trusted key signed it and it names the signature it was looked up
under; a blob only if it hashes to its name and has the recorded size. Remotes that fail
(down, or stalled past their timeouts) are reported once in ``problems`` and skipped for the
rest of the run, so a cache that is down costs one warning and no retries.

Pushes tell the truth: every upload that did not land is a ``PushRefusal`` (which record,
which blob, which remote, why), and a local blob that does not hash to its name is never
uploaded.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from buildprint.errors import StoreError
from buildprint.store.local import LocalStore, StagedRecord, record_of
from buildprint.store.record import ActionRecord, Artifact
from buildprint.store.remote import (
    Remote,
    RemoteEntry,
    RemoteError,
    RemoteIntegrityError,
    RemoteMissing,
    RemoteUnavailable,
    UploadIntegrityError,
)
from buildprint.store.signing import SigningKey, UntrustedRecord, sign_record, verify_envelope

__all__ = ["PushRefusal", "PushReport", "RemoteCache", "RemoteListing"]

log = logging.getLogger("buildprint.store.cache")

DEFAULT_JOBS = 16


@dataclass(frozen=True)
class RemoteListing:
    """One entry of a remote as ``RemoteCache.list_remote`` sees it.

    ``record`` is set only when the record was read and verified (trusted signature, own
    name); ``problem`` says why it was not, when it was read.
    """

    signature: str
    size: int | None
    modified: str | None
    record: ActionRecord | None
    problem: str | None


@dataclass(frozen=True)
class PushRefusal:
    """One upload that did not land: the record, the blob (None: the record itself), the
    remote (redacted URL) and why (the server's status, or the local problem)."""

    remote: str
    signature: str
    name: str
    version: str
    blob: str | None
    reason: str

    def __str__(self) -> str:
        what = f"blob {self.blob}" if self.blob is not None else "record"
        return (
            f"record {self.signature} ({self.name} {self.version}) not pushed to "
            f"{self.remote}: {what}: {self.reason}"
        )


@dataclass
class PushReport:
    """What ``RemoteCache.push_many`` did: per writable remote, how many records it created
    and how many were there already (both landed), and every refusal."""

    records: int = 0
    remotes: list[str] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)
    refused: list[PushRefusal] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """True when every record landed on every writable remote."""
        return bool(self.remotes) and not self.refused

    @property
    def landed(self) -> int:
        """Records that landed on every writable remote."""
        return self.records - len({r.signature for r in self.refused})


class RemoteCache:
    """The remotes of a project in front of its local store.

    ``trusted_keys`` are ``ed25519:<b64>`` ids; the project's own key (``signing_key``) is
    always trusted. ``problems`` collects one line per distinct problem for the CLI to print
    (a remote refusing uploads: once per remote); ``refusals`` every upload that failed.
    """

    def __init__(
        self,
        remotes: Sequence[Remote],
        local: LocalStore,
        trusted_keys: Iterable[str],
        signing_key: SigningKey | None,
        *,
        jobs: int = DEFAULT_JOBS,
    ) -> None:
        self.remotes = list(remotes)
        self.local = local
        self.signing_key = signing_key
        self.trusted_keys = frozenset(trusted_keys) | (
            {signing_key.public_id} if signing_key is not None else frozenset()
        )
        self.jobs = max(1, jobs)
        self.problems: list[str] = []
        self.refusals: list[PushRefusal] = []
        self._down: set[str] = set()
        self._refusing: set[str] = set()  # remotes that refused an upload (reported once)
        self._origin: dict[str, Remote] = {}
        self._lock = threading.Lock()

    # -- problems ------------------------------------------------------------------------

    def _pool(self, jobs: int | None, tasks: int) -> ThreadPoolExecutor:
        """Threads for ``tasks`` concurrent remote calls: ``jobs`` (default the cache's),
        never more than there are tasks."""
        return ThreadPoolExecutor(max_workers=max(1, min(jobs or self.jobs, tasks)))

    def _report(self, message: str) -> None:
        with self._lock:
            if message not in self.problems:
                self.problems.append(message)
                log.info("%s", message)  # the CLI prints `problems`: once, not twice

    def _usable(self, remote: Remote) -> bool:
        with self._lock:
            return remote.url not in self._down

    def _failed(self, remote: Remote, exc: RemoteError) -> None:
        """Report ``exc``; an unreachable remote is then skipped for the rest of the run."""
        if isinstance(exc, RemoteUnavailable):
            with self._lock:
                if remote.url in self._down:
                    return
                self._down.add(remote.url)
            self._report(f"{exc}; continuing without it")
        else:
            self._report(str(exc))

    # -- lookup ----------------------------------------------------------------------

    def lookup(self, signature: str) -> ActionRecord | None:
        """The first verified record for ``signature`` on any remote, or None."""
        for remote in self.remotes:
            if not self._usable(remote):
                continue
            try:
                data = remote.get_record(signature)
            except RemoteError as exc:
                self._failed(remote, exc)
                continue
            if data is None:
                continue
            record = self._verified(remote, signature, data)
            if record is not None:
                with self._lock:
                    self._origin[signature] = remote
                return record
        return None

    def lookup_at(self, remote: Remote, signature: str) -> tuple[ActionRecord | None, str | None]:
        """``signature``'s verified record on ``remote`` alone (even one marked down earlier
        in the run), or None and why not (None: it has none)."""
        try:
            data = remote.get_record(signature)
        except RemoteError as exc:
            return None, str(exc)
        if data is None:
            return None, None
        record, problem = self._check_record(remote, signature, data)
        if record is not None:
            with self._lock:
                self._origin[signature] = remote
        return record, problem

    def lookup_many(
        self, signatures: Iterable[str], jobs: int | None = None
    ) -> dict[str, ActionRecord]:
        """Verified records for ``signatures`` found on any remote, looked up concurrently.

        Each signature is tried on the remotes in order, exactly as ``lookup`` does (record
        signature checked against the trusted keys, signed name checked); absent ones are
        left out.
        """
        wanted = list(dict.fromkeys(signatures))
        if not wanted:
            return {}
        with self._pool(jobs, len(wanted)) as pool:
            found = list(pool.map(self.lookup, wanted))
        return {sig: rec for sig, rec in zip(wanted, found, strict=True) if rec is not None}

    def _verified(self, remote: Remote, signature: str, data: bytes) -> ActionRecord | None:
        record, problem = self._check_record(remote, signature, data)
        if problem is not None:
            self._report(problem)
        return record

    def _check_record(
        self, remote: Remote, signature: str, data: bytes
    ) -> tuple[ActionRecord | None, str | None]:
        """The verified record, or None and why it is refused."""
        where = f"remote {remote.url}: record {signature}"
        try:
            record = ActionRecord.from_bytes(verify_envelope(data, self.trusted_keys))
        except UntrustedRecord as exc:
            return None, f"{where} ignored: {exc.message}"
        except StoreError as exc:
            return None, f"{where} ignored: malformed ({exc})"
        if record.signature != signature:
            # A validly signed record copied under another name: replaying it would hand
            # out the wrong build for these inputs.
            return None, f"{where} ignored: it is for {record.signature}"
        return record, None

    # -- listing and checking a remote --------------------------------------------------

    def list_remote(
        self, remote: Remote, *, read_records: bool = True, jobs: int | None = None
    ) -> list[RemoteListing]:
        """Every ``ac/`` entry of ``remote``, by signature.

        With ``read_records`` each record is also fetched (concurrently) and verified like a
        lookup would, so verified entries carry their name, version and wheels; the others
        carry the reason they would be refused. Listing errors raise ``RemoteError``.
        """
        entries = list(remote.list_records())
        if not read_records or not entries:
            return [RemoteListing(e.signature, e.size, e.modified, None, None) for e in entries]

        def read(entry: RemoteEntry) -> RemoteListing:
            try:
                data = remote.get_record(entry.signature)
            except RemoteError as exc:
                return RemoteListing(entry.signature, entry.size, entry.modified, None, str(exc))
            if data is None:
                gone = f"remote {remote.url}: record {entry.signature} vanished while listed"
                return RemoteListing(entry.signature, entry.size, entry.modified, None, gone)
            record, problem = self._check_record(remote, entry.signature, data)
            return RemoteListing(entry.signature, entry.size, entry.modified, record, problem)

        with self._pool(jobs, len(entries)) as pool:
            return list(pool.map(read, entries))

    def verify_remote(
        self, remote: Remote, *, download: bool = False, jobs: int | None = None
    ) -> list[str]:
        """Check every entry of ``remote``; return problems (empty when it is sound).

        Each record must be signed by a trusted key and name its own signature; each blob it
        refers to must exist (``HEAD``), or with ``download`` must download and hash to its
        name with the recorded size (into a temp folder of the local store, then removed).
        Nothing is changed on the remote or in the local store.
        """
        listing = self.list_remote(remote, jobs=jobs)
        problems = [item.problem for item in listing if item.problem is not None]
        wanted: dict[str, tuple[Artifact, list[str]]] = {}
        for item in listing:
            for artifact in item.record.artifacts if item.record is not None else ():
                users = wanted.setdefault(artifact.sha256, (artifact, []))[1]
                users.append(item.signature)

        def check(sha: str) -> str | None:
            artifact, users = wanted[sha]
            where = (
                f"remote {remote.url}: blob {sha} ({artifact.filename}, used by {', '.join(users)})"
            )
            try:
                if not download:
                    return None if remote.has_blob(sha) else f"{where} is missing"
                tmp = self.local.new_tmp_path()
                try:
                    size = remote.get_blob(sha, tmp)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
            except RemoteMissing:
                return f"{where} is missing"
            except RemoteIntegrityError:
                return f"{where} does not hash to its name (corrupt or tampered)"
            except RemoteError as exc:
                return f"{where}: {exc}"
            if size != artifact.size:
                return f"{where} has {size} bytes, record says {artifact.size}"
            return None

        if wanted:
            with self._pool(jobs, len(wanted)) as pool:
                problems += [p for p in pool.map(check, sorted(wanted)) if p is not None]
        return problems

    # -- fetch -----------------------------------------------------------------------

    def fetch(self, record: ActionRecord) -> None:
        """Download the record's missing blobs (verified) into the local store, then the record.

        Raises ``RemoteError`` (why) if it could not be stored; the local store then has no
        record for it.
        """
        _stored, errors = _FetchRun(self, [record]).run(None)
        if record.signature in errors:
            raise errors[record.signature]

    def fetch_many(
        self, records: Iterable[ActionRecord], jobs: int | None = None
    ) -> list[ActionRecord]:
        """Fetch several records concurrently; return those now complete locally, in order.

        Blobs are downloaded on ``jobs`` threads straight into the local store's temp folder,
        verified while streaming (digest and size); the thread that completes a record's last
        blob also stages the record file. This thread meanwhile commits whatever is ready, in
        batches (``LocalStore.put_records``: one flush, the renames into the CAS and ``ac/``,
        one index transaction). A record whose blobs failed is left out (and reported); the
        others are stored.
        """
        return _FetchRun(self, records).run(jobs)[0]

    def _sources(self, signature: str) -> list[Remote]:
        """Remotes to try for a record's blobs: the one it came from first."""
        with self._lock:
            origin = self._origin.get(signature)
        rest = [r for r in self.remotes if r is not origin]
        return ([origin] if origin is not None else []) + rest

    def _download(
        self, artifact: Artifact, sources: list[Remote]
    ) -> tuple[Path | None, RemoteError | None]:
        """Download one blob from the first remote that has it intact, into the local store's
        temp folder: (its path, None), or (None, the last error).

        ``Remote.get_blob`` checks the digest while streaming; the size is checked here (the
        hash matched, so a wrong size means the record is wrong: never stored).
        """
        last: RemoteError = RemoteError(
            f"no usable remote has blob {artifact.sha256} ({artifact.filename})", url=""
        )
        for remote in sources:
            if not self._usable(remote):
                continue
            tmp = self.local.new_tmp_path(artifact.sha256)
            try:
                size = remote.get_blob(artifact.sha256, tmp)
                if size != artifact.size:
                    raise RemoteError(
                        f"remote {remote.url}: blob {artifact.sha256} has {size} bytes, "
                        f"expected {artifact.size}",
                        url=remote.url,
                    )
                return tmp, None
            except RemoteError as exc:
                _remove([tmp])
                self._failed(remote, exc)
                last = exc
        return None, last

    # -- push ------------------------------------------------------------------------

    def push(self, record: ActionRecord) -> dict[str, bool]:
        """Publish a locally stored record to every writable remote: blobs first, record last.

        Returns ``remote url -> True`` (created) or ``False`` (an entry existed and was kept):
        the remotes it landed on. Each upload that did not land is added to ``refusals``
        (a remote that refuses is reported once in ``problems``). A local blob is uploaded
        only if its bytes hash to its name; a corrupt one is reported and its record is not
        pushed anywhere.
        """
        outcome, refused = self._push(record)
        with self._lock:
            self.refusals.extend(refused)
        return outcome

    def push_many(self, records: Iterable[ActionRecord]) -> PushReport:
        """``push`` each record; what landed where, and every refusal."""
        report = PushReport(remotes=[r.url for r in self.remotes if r.writable])
        for url in report.remotes:
            report.created[url] = report.present[url] = 0
        for record in records:
            report.records += 1
            outcome, refused = self._push(record)
            for url, created in outcome.items():
                (report.created if created else report.present)[url] += 1
            report.refused.extend(refused)
            with self._lock:
                self.refusals.extend(refused)
        return report

    def _push(self, record: ActionRecord) -> tuple[dict[str, bool], list[PushRefusal]]:
        writable = [r for r in self.remotes if r.writable]

        def refusal(remote: Remote, blob: str | None, reason: str) -> PushRefusal:
            return PushRefusal(
                remote.url, record.signature, record.name, record.version, blob, reason
            )

        if not writable:
            return {}, []
        if self.signing_key is None:
            self._report("no signing key: records are not pushed (run `buildprint keys generate`)")
            return {}, [refusal(r, None, "no signing key to sign it with") for r in writable]
        paths: list[tuple[str, Path]] = []
        for artifact in record.artifacts:
            path = self.local.blob_path(artifact.sha256)
            if path is None:
                self._report(
                    f"record {record.signature} ({record.name} {record.version}): blob "
                    f"{artifact.sha256} is not in the local store {self.local.root}; not pushed"
                )
                reason = "not in the local store"
                return {}, [refusal(r, artifact.sha256, reason) for r in writable]
            paths.append((artifact.sha256, path))
        envelope = sign_record(record.to_bytes(), self.signing_key)
        outcome: dict[str, bool] = {}
        refused: list[PushRefusal] = []
        corrupt = False
        for remote in writable:
            if corrupt:
                # The same bad bytes would go to this remote: the record goes nowhere.
                refused.append(refusal(remote, None, "not tried: a local blob of it is corrupt"))
                continue
            if not self._usable(remote):
                refused.append(refusal(remote, None, "not tried: the remote is unavailable"))
                continue
            errors = self._put_blobs(remote, paths)
            for sha, exc in errors:
                refused.append(refusal(remote, sha, self._upload_problem(remote, exc)))
                corrupt = corrupt or isinstance(exc, UploadIntegrityError)
            if errors:
                continue  # blobs first, record last: a record never points at missing blobs
            try:
                outcome[remote.url] = remote.put_record(record.signature, envelope)
            except RemoteError as exc:
                refused.append(refusal(remote, None, self._upload_problem(remote, exc)))
        return outcome, refused

    def _put_blobs(
        self, remote: Remote, paths: list[tuple[str, Path]]
    ) -> list[tuple[str, RemoteError]]:
        """Upload the blobs concurrently (each only if missing there); the ones that failed."""
        if not paths:
            return []

        def put(item: tuple[str, Path]) -> tuple[str, RemoteError] | None:
            try:
                remote.put_blob(*item)
            except RemoteError as exc:
                return item[0], exc
            return None

        with self._pool(None, len(paths)) as pool:
            return [failed for failed in pool.map(put, paths) if failed is not None]

    def _upload_problem(self, remote: Remote, exc: RemoteError) -> str:
        """Report an upload that failed (once per remote, or per corrupt blob) and say why."""
        if isinstance(exc, UploadIntegrityError):
            self._report(f"{exc} (run `buildprint cache verify`)")
        elif isinstance(exc, RemoteUnavailable):
            self._failed(remote, exc)
        else:
            with self._lock:
                first = remote.url not in self._refusing
                self._refusing.add(remote.url)
            if first:
                self._report(f"remote {remote.url} refused an upload: {exc}")
        # The refusal names the remote already.
        return str(exc).removeprefix(f"remote {remote.url}: ").removeprefix(f"remote {remote.url} ")


class _FetchRun:
    """One ``fetch_many``: downloads on pool threads, records stored in batches by the caller.

    A download thread that completes a record's last blob stages the record and hands it to the
    calling thread (the writer) through ``_settled``, a thread-safe queue that also gets each
    record that failed, once. The writer takes whatever has settled, with the downloads those
    records need, and stores it all in one ``LocalStore.put_records`` call.

    Locking rule: ``__init__`` builds every field before any thread exists; from then on
    ``_records``, ``_users`` and ``_artifacts`` are only read, and every shared mutable field
    (``_outstanding``, ``_failed``, ``_stored``, ``_downloads``) is touched only under ``_lock``,
    by every thread alike; nothing that can block is done while holding it (``_settled.put``
    never blocks).
    """

    def __init__(self, cache: RemoteCache, records: Iterable[ActionRecord]) -> None:
        self._cache = cache
        self._local = cache.local
        self._records = list({r.signature: r for r in records}.values())
        #: Records that need each blob, and the blob with the remotes to try for it.
        self._users: dict[str, list[ActionRecord]] = {}
        self._artifacts: dict[str, tuple[Artifact, list[Remote]]] = {}
        #: Blobs each record still waits for.
        self._outstanding: dict[str, int] = {}
        #: Why each record left out was (by signature).
        self._failed: dict[str, RemoteError] = {}
        self._stored: set[str] = set()
        #: Verified downloads not in the CAS yet (the batch that first needs one adopts it).
        self._downloads: dict[str, Path] = {}
        self._lock = threading.Lock()
        # Each record arrives here exactly once: with what to store, or None if it failed.
        self._settled: queue.SimpleQueue[tuple[ActionRecord, ActionRecord | StagedRecord | None]]
        self._settled = queue.SimpleQueue()
        for record in self._records:
            digests = {a.sha256: a for a in record.artifacts}
            self._outstanding[record.signature] = len(digests)
            for sha, artifact in digests.items():
                self._users.setdefault(sha, []).append(record)
                self._artifacts.setdefault(sha, (artifact, cache._sources(record.signature)))
            if not digests:
                self._settled.put((record, record))

    def run(self, jobs: int | None) -> tuple[list[ActionRecord], dict[str, RemoteError]]:
        """Fetch; return the records now complete locally (in order) and why the others are
        not (each also reported on the cache)."""
        pending = len(self._records)
        pool = self._cache._pool(jobs, len(self._artifacts))
        try:
            futures = [pool.submit(self._get, sha) for sha in self._artifacts]
            while pending:
                try:
                    item = self._settled.get(timeout=0.5)
                except queue.Empty:
                    if all(f.done() for f in futures) and self._settled.empty():
                        for future in futures:
                            future.result()  # a worker died of a bug: raise it, do not hang
                        raise AssertionError("fetch_many: records left unsettled") from None
                    continue
                # Take whatever else is ready too: the batch grows while downloads go on.
                batch: list[ActionRecord | StagedRecord] = []
                while True:
                    pending -= 1
                    if item[1] is not None:
                        batch.append(item[1])
                    try:
                        item = self._settled.get_nowait()
                    except queue.Empty:
                        break
                if batch:
                    self._write(batch)
            for future in futures:
                future.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self._clean_up()
        with self._lock:
            stored = set(self._stored)
            failed = dict(self._failed)
        for record in self._records:
            if record.signature in failed:
                self._cache._report(
                    f"record {record.signature} ({record.name} {record.version}) not fetched: "
                    f"{failed[record.signature]}"
                )
        return [r for r in self._records if r.signature in stored], failed

    def _get(self, sha: str) -> None:
        """Download one blob (unless stored already), on a pool thread; stage the records it
        completes, settle those it fails."""
        artifact, sources = self._artifacts[sha]
        path: Path | None = None
        error: RemoteError | None = None
        try:
            if not self._local.has_blob(sha):
                path, error = self._cache._download(artifact, sources)
        except (StoreError, OSError) as exc:  # local disk trouble: its records cannot be had
            error = RemoteError(f"blob {sha} not stored locally: {exc}", url="")
            self._cache._report(str(error))
        ready: list[ActionRecord] = []
        with self._lock:
            if path is not None:
                self._downloads[sha] = path
            for record in self._users[sha]:
                signature = record.signature
                if error is not None and signature not in self._failed:
                    self._failed[signature] = error
                    self._settled.put((record, None))
                self._outstanding[signature] -= 1
                if self._outstanding[signature] == 0 and signature not in self._failed:
                    ready.append(record)
        for record in ready:
            self._stage(record)

    def _stage(self, record: ActionRecord) -> None:
        try:
            self._settled.put((record, self._local.stage_record(record)))
        except (StoreError, OSError):
            self._settled.put((record, record))  # the batch write will try again and report

    def _write(self, batch: list[ActionRecord | StagedRecord]) -> None:
        """Store a batch in one call; if that fails, record by record, so that one bad record
        does not cost the others."""
        blobs = self._take_downloads(batch)
        try:
            self._local.put_records(batch, blobs=blobs)
        except (StoreError, OSError):
            self._give_back(blobs)
            for item in batch:
                record = record_of(item)
                mine = self._take_downloads([record])
                try:
                    self._local.put_records([record], blobs=mine)
                except (StoreError, OSError) as exc:
                    self._give_back(mine)
                    with self._lock:
                        self._failed[record.signature] = RemoteError(
                            f"not stored locally: {exc}", url=""
                        )
                    continue
                with self._lock:
                    self._stored.add(record.signature)
        else:
            with self._lock:
                self._stored.update(record_of(item).signature for item in batch)

    def _take_downloads(self, items: Iterable[ActionRecord | StagedRecord]) -> dict[str, Path]:
        """Remove from ``_downloads`` and return the ones ``items`` need."""
        needed = {a.sha256 for item in items for a in record_of(item).artifacts}
        with self._lock:
            return {sha: self._downloads.pop(sha) for sha in needed if sha in self._downloads}

    def _give_back(self, blobs: dict[str, Path]) -> None:
        with self._lock:
            self._downloads.update(blobs)

    def _clean_up(self) -> None:
        """Staged records never committed (an error stopped the run) must not linger in
        ``tmp/``, nor downloads that no record took (their records failed)."""
        while True:
            try:
                leftover = self._settled.get_nowait()[1]
            except queue.Empty:
                break
            if isinstance(leftover, StagedRecord):
                leftover.discard()
        with self._lock:
            leftovers = list(self._downloads.values())
            self._downloads.clear()
        _remove(leftovers)


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
