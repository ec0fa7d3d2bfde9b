"""RemoteCache: look up, fetch and publish action records across remotes, verifying everything.

A record is used only if a trusted key signed it and it names the signature it was looked up
under; a blob only if it hashes to its name and has the recorded size. Remotes that fail are
reported once in ``problems`` and skipped for the rest of the run, so a cache that is down
costs one warning and no retries.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from buildprint.errors import StoreError
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord, Artifact
from buildprint.store.remote import Remote, RemoteError, RemoteUnavailable
from buildprint.store.signing import SigningKey, UntrustedRecord, sign_record, verify_envelope

__all__ = ["RemoteCache"]

log = logging.getLogger("buildprint.store.cache")

DEFAULT_JOBS = 16


class RemoteCache:
    """The remotes of a project in front of its local store.

    ``trusted_keys`` are ``ed25519:<b64>`` ids; the project's own key (``signing_key``) is
    always trusted. ``problems`` collects one line per distinct problem for the CLI to print.
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
        self._down: set[str] = set()
        self._origin: dict[str, Remote] = {}
        self._lock = threading.Lock()

    # -- problems ------------------------------------------------------------------------

    def _report(self, message: str) -> None:
        with self._lock:
            if message not in self.problems:
                self.problems.append(message)
                log.warning("%s", message)

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

    def _verified(self, remote: Remote, signature: str, data: bytes) -> ActionRecord | None:
        try:
            record = ActionRecord.from_bytes(verify_envelope(data, self.trusted_keys))
        except UntrustedRecord as exc:
            self._report(f"remote {remote.url}: record {signature} ignored: {exc.message}")
            return None
        except StoreError as exc:
            self._report(f"remote {remote.url}: record {signature} ignored: malformed ({exc})")
            return None
        if record.signature != signature:
            # A validly signed record copied under another name: replaying it would hand
            # out the wrong build for these inputs.
            self._report(
                f"remote {remote.url}: record {signature} ignored: it is for {record.signature}"
            )
            return None
        return record

    # -- fetch -----------------------------------------------------------------------

    def fetch(self, record: ActionRecord) -> None:
        """Download the record's missing blobs (verified) into the local store, then the record.

        Raises ``RemoteError`` if some blob could not be obtained from any remote; the local
        store then has no record for it.
        """
        missing = self._fetch_blobs(record.artifacts, self._sources(record.signature))
        if missing:
            raise missing[0]
        self.local.put_record(record)

    def fetch_many(
        self, records: Iterable[ActionRecord], jobs: int | None = None
    ) -> list[ActionRecord]:
        """Fetch several records concurrently; return those now complete locally, in order.

        Blob downloads run on ``jobs`` threads and each record is written by the thread that
        completes its last blob, so local writes overlap with downloads. A record whose blobs
        failed is left out (and reported); the others are stored.
        """
        records = list(records)
        users: dict[str, list[ActionRecord]] = {}
        artifacts: dict[str, tuple[Artifact, list[Remote]]] = {}
        outstanding: dict[str, int] = {}
        for record in records:
            digests = {a.sha256: a for a in record.artifacts}
            outstanding[record.signature] = len(digests)
            for sha, artifact in digests.items():
                users.setdefault(sha, []).append(record)
                artifacts.setdefault(sha, (artifact, self._sources(record.signature)))
        failed: set[str] = set()
        stored: set[str] = set()
        lock = threading.Lock()

        def store(record: ActionRecord) -> None:
            try:
                self.local.put_record(record)
            except StoreError as exc:
                self._report(f"record {record.signature} not stored locally: {exc}")
                return
            with lock:
                stored.add(record.signature)

        def get(sha: str) -> None:
            artifact, sources = artifacts[sha]
            error = None if self.local.has_blob(sha) else self._fetch_blob(artifact, sources)
            ready: list[ActionRecord] = []
            with lock:
                for record in users[sha]:
                    if error is not None:
                        failed.add(record.signature)
                    outstanding[record.signature] -= 1
                    if outstanding[record.signature] == 0 and record.signature not in failed:
                        ready.append(record)
            for record in ready:
                store(record)

        for record in records:
            if outstanding[record.signature] == 0:
                store(record)
        if artifacts:
            workers = max(1, min(jobs or self.jobs, len(artifacts)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                list(pool.map(get, artifacts))
        for record in records:
            if record.signature in failed:
                self._report(
                    f"record {record.signature} ({record.name} {record.version}) not fetched: "
                    "a blob could not be downloaded"
                )
        return [r for r in records if r.signature in stored]

    def _sources(self, signature: str) -> list[Remote]:
        """Remotes to try for a record's blobs: the one it came from first."""
        with self._lock:
            origin = self._origin.get(signature)
        rest = [r for r in self.remotes if r is not origin]
        return ([origin] if origin is not None else []) + rest

    def _fetch_blobs(
        self, artifacts: Sequence[Artifact], sources: list[Remote]
    ) -> list[RemoteError]:
        wanted = {a.sha256: (a, sources) for a in artifacts}
        return [err for _sha, err in self._fetch_blobs_by_digest(wanted, self.jobs)]

    def _fetch_blobs_by_digest(
        self, wanted: dict[str, tuple[Artifact, list[Remote]]], jobs: int
    ) -> list[tuple[str, RemoteError]]:
        todo = [item for sha, item in wanted.items() if not self.local.has_blob(sha)]
        if not todo:
            return []
        with ThreadPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
            results = list(pool.map(lambda item: self._fetch_blob(*item), todo))
        return [(a.sha256, err) for (a, _), err in zip(todo, results, strict=True) if err]

    def _fetch_blob(self, artifact: Artifact, sources: list[Remote]) -> RemoteError | None:
        """Get one blob from the first remote that has it intact; None on success."""
        last: RemoteError = RemoteError(
            f"no usable remote has blob {artifact.sha256} ({artifact.filename})", url=""
        )
        tmp = self.local.tmp_dir / f"fetch-{uuid.uuid4().hex}-{artifact.sha256}"
        for remote in sources:
            if not self._usable(remote):
                continue
            try:
                remote.get_blob(artifact.sha256, tmp)
                size = tmp.stat().st_size
                if size != artifact.size:
                    # The hash matched, so the record is what is wrong; never store it.
                    raise RemoteError(
                        f"remote {remote.url}: blob {artifact.sha256} has {size} bytes, "
                        f"record says {artifact.size}",
                        url=remote.url,
                    )
                digest = self.local.put_blob(tmp)
                if digest != artifact.sha256:  # the file changed under us
                    raise RemoteError(f"blob {artifact.sha256} changed while stored", url="")
                return None
            except RemoteError as exc:
                self._failed(remote, exc)
                last = exc
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        return last

    # -- push ------------------------------------------------------------------------

    def push(self, record: ActionRecord) -> dict[str, bool]:
        """Publish a locally stored record to every writable remote: blobs first, record last.

        Returns ``remote url -> True`` (created) or ``False`` (an entry existed and was kept);
        remotes that failed are absent and reported in ``problems``.
        """
        if self.signing_key is None:
            self._report("no signing key: records are not pushed (run `buildprint keys generate`)")
            return {}
        paths: list[tuple[str, Path]] = []
        for artifact in record.artifacts:
            path = self.local.blob_path(artifact.sha256)
            if path is None:
                raise StoreError(
                    f"record {record.signature}: blob {artifact.sha256} is not in the local store",
                    file=self.local.root,
                )
            paths.append((artifact.sha256, path))
        envelope = sign_record(record.to_bytes(), self.signing_key)
        outcome: dict[str, bool] = {}
        for remote in self.remotes:
            if not remote.writable or not self._usable(remote):
                continue
            try:
                if paths:
                    with ThreadPoolExecutor(max_workers=min(self.jobs, len(paths))) as pool:
                        # list() re-raises the first upload error before the record goes up.
                        list(pool.map(lambda item, r=remote: r.put_blob(*item), paths))
                outcome[remote.url] = remote.put_record(record.signature, envelope)
            except RemoteError as exc:
                self._failed(remote, exc)
        return outcome
