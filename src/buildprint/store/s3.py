"""S3 remote cache (AWS or any S3-compatible server such as Ceph radosgw), through boto3.

Records are created with ``put_object(IfNoneMatch='*')``: the server refuses (412) when the key
exists, atomically (radosgw turns it into an exclusive create of the head object). On a server
that ignores the header the HEAD check before it still stops the common case, but two writers
racing inside the HEAD-to-PUT window both succeed and the later complete object wins. Blobs are
content-addressed, so an overwrite is harmless; big ones go through boto3's multipart transfer,
whose object only appears when the upload completes.

GETs of blobs and records go through ``DirectGets`` with a presigned URL (signed locally by
botocore, the same SigV4 credentials): about two thirds of the cost of a boto3 ``get_object``.
Where a proxy is configured for the endpoint, they stay with boto3, which honours it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import urllib.request
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit

import boto3
import botocore.config
import botocore.exceptions
from boto3.s3.transfer import TransferConfig

from buildprint.errors import InputError
from buildprint.store.direct import DirectGets, read_all
from buildprint.store.record import is_digest
from buildprint.store.remote import (
    RemoteAccessDenied,
    RemoteEntry,
    RemoteError,
    RemoteMissing,
    RemoteTimeout,
    RemoteTimeouts,
    RemoteUnavailable,
    UploadIntegrityError,
    check_digest,
    write_verified,
)
from buildprint.urls import redact_url

__all__ = ["S3Remote"]

_CHUNK = 1 << 20
_TRANSFER = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=16 << 20)
_NETWORK_ERRORS = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ProxyConnectionError,
)
_TIMEOUTS = (botocore.exceptions.ConnectTimeoutError, botocore.exceptions.ReadTimeoutError)
_CONDITIONAL_RETRIES = 3
#: Attempts per boto3 request, the first included: a stall costs at most this many timeouts.
_ATTEMPTS = 2
#: Presigned GET URLs are made just before use; this only bounds a stalled request.
_PRESIGN_SECONDS = 600
_ERROR_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")


class S3Remote:
    """A remote cache at ``s3://bucket/prefix``.

    The endpoint comes from ``BUILDPRINT_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL`` (none: AWS);
    credentials and region the usual boto3 way (environment, profile, instance role).
    ``timeouts`` bound each attempt of a request (boto3 makes at most two).
    """

    def __init__(
        self,
        url: str,
        *,
        writable: bool,
        timeouts: RemoteTimeouts | None = None,
        max_connections: int = 64,
    ) -> None:
        self._timeouts = timeouts = timeouts or RemoteTimeouts()
        parts = urlsplit(url)
        if not parts.hostname:
            raise InputError(f"remote URL {redact_url(url)!r} names no bucket")
        self._bucket = parts.netloc
        prefix = parts.path.strip("/")
        self._prefix = f"{prefix}/" if prefix else ""
        self._url = redact_url(url)
        self._writable = writable
        #: Keys per ListObjectsV2 page (the S3 maximum; smaller only to exercise paging).
        self.list_page = 1000
        endpoint = os.environ.get("BUILDPRINT_S3_ENDPOINT") or os.environ.get("AWS_ENDPOINT_URL")
        session = boto3.session.Session()
        region = session.region_name or ("us-east-1" if endpoint else None)
        config = botocore.config.Config(
            max_pool_connections=max_connections,
            connect_timeout=timeouts.connect,
            read_timeout=timeouts.read,
            # Few retries: a cache that is down should be reported quickly, not waited for.
            retries={"total_max_attempts": _ATTEMPTS, "mode": "standard"},
            s3={"addressing_style": "path"} if endpoint else None,
        )
        self._client: Any = session.client(
            "s3", endpoint_url=endpoint, region_name=region, config=config
        )
        self._direct = not _proxied(self._client.meta.endpoint_url)
        self._gets: dict[tuple[str, str], DirectGets] = {}
        self._gets_lock = threading.Lock()

    @property
    def url(self) -> str:
        return self._url

    @property
    def writable(self) -> bool:
        return self._writable

    def __repr__(self) -> str:
        return f"S3Remote({self._url!r}, writable={self._writable})"

    __str__ = __repr__

    def close(self) -> None:
        self._client.close()
        with self._gets_lock:
            for gets in self._gets.values():
                gets.close()

    # -- errors ----------------------------------------------------------------------

    def _translate(self, exc: Exception, what: str) -> RemoteError:
        """Map boto errors to ours; the message names the operation, never credentials."""
        if isinstance(exc, _TIMEOUTS):
            connect = isinstance(exc, botocore.exceptions.ConnectTimeoutError)
            limit = self._timeouts.connect if connect else self._timeouts.read
            return RemoteTimeout(
                f"remote {self._url} did not answer {what} within {limit:g} s "
                f"({type(exc).__name__})",
                url=self._url,
            )
        if isinstance(exc, _NETWORK_ERRORS):
            return RemoteUnavailable(
                f"remote {self._url} unreachable during {what}: {type(exc).__name__}",
                url=self._url,
            )
        if isinstance(exc, botocore.exceptions.NoCredentialsError):
            return RemoteAccessDenied(f"remote {self._url}: no S3 credentials found", url=self._url)
        if isinstance(exc, botocore.exceptions.ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            return self._refusal(self._status(exc), code, what)
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return RemoteUnavailable(
                f"remote {self._url} failed {what}: {type(exc).__name__}", url=self._url
            )
        raise exc

    def _refusal(self, status: int, code: str, what: str) -> RemoteError:
        """The error for an S3 answer other than success (``code``: S3's error code)."""
        if status in {401, 403} or code in {"AccessDenied", "InvalidAccessKeyId"}:
            return RemoteAccessDenied(
                f"remote {self._url} refused {what}: {code or status} (check credentials)",
                url=self._url,
            )
        if status >= 500 or code == "NoSuchBucket":
            return RemoteUnavailable(
                f"remote {self._url} failed {what}: {code or status}", url=self._url
            )
        return RemoteError(f"remote {self._url}: {what} failed: {code or status}", url=self._url)

    @staticmethod
    def _status(exc: botocore.exceptions.ClientError) -> int:
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))

    def _exists(self, key: str, what: str) -> bool:
        try:
            self._client.head_object(Bucket=self._bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if self._status(exc) == 404:
                return False
            raise self._translate(exc, what) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._translate(exc, what) from None
        return True

    # -- records ---------------------------------------------------------------------

    def _record_key(self, signature: str) -> str:
        return f"{self._prefix}ac/{check_digest(signature, 'signature', self._url)}"

    def get_record(self, signature: str) -> bytes | None:
        key = self._record_key(signature)
        if self._direct:
            with self._get(key, f"GET record {signature}") as body:
                return None if body is None else read_all(body)
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
            data: bytes = response["Body"].read()
        except botocore.exceptions.ClientError as exc:
            if self._status(exc) == 404:
                return None
            raise self._translate(exc, f"GET record {signature}") from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._translate(exc, f"GET record {signature}") from None
        return data

    def put_record(self, signature: str, data: bytes) -> bool:
        key = self._record_key(signature)
        self._require_writable()
        what = f"PUT record {signature}"
        if self._exists(key, what):
            return False
        for _attempt in range(_CONDITIONAL_RETRIES):
            try:
                self._client.put_object(Bucket=self._bucket, Key=key, Body=data, IfNoneMatch="*")
            except botocore.exceptions.ClientError as exc:
                status = self._status(exc)
                if status == 412:
                    return False
                if status == 409:
                    # AWS: a concurrent conditional write is in flight; its outcome decides.
                    continue
                raise self._translate(exc, what) from None
            except botocore.exceptions.BotoCoreError as exc:
                raise self._translate(exc, what) from None
            return True
        return not self._exists(key, what)

    def list_records(self) -> Iterator[RemoteEntry]:
        """``ac/`` entries via paginated ``ListObjectsV2`` under ``<prefix>ac/``."""
        prefix = f"{self._prefix}ac/"
        what = "LIST records"
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=prefix, PaginationConfig={"PageSize": self.list_page}
            )
            for page in pages:
                for item in page.get("Contents", ()):
                    name = str(item["Key"])[len(prefix) :]
                    if not is_digest(name):
                        continue
                    modified = item.get("LastModified")
                    yield RemoteEntry(
                        signature=name,
                        size=int(item["Size"]) if "Size" in item else None,
                        modified=(
                            modified.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                            if modified is not None
                            else None
                        ),
                    )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._translate(exc, what) from None

    # -- blobs -----------------------------------------------------------------------

    def _blob_key(self, sha256: str) -> str:
        return f"{self._prefix}cas/{check_digest(sha256, 'blob', self._url)}"

    def has_blob(self, sha256: str) -> bool:
        return self._exists(self._blob_key(sha256), f"HEAD blob {sha256}")

    def get_blob(self, sha256: str, dest: Path) -> int:
        key = self._blob_key(sha256)
        what = f"GET blob {sha256}"
        if self._direct:
            with self._get(key, what) as body:
                if body is None:
                    raise RemoteMissing(f"remote {self._url} has no blob {sha256}", url=self._url)
                return write_verified(body, sha256, dest, url=self._url)
        try:
            response = self._client.get_object(Bucket=self._bucket, Key=key)
            body = response["Body"]
            try:
                return write_verified(_iter_body(body), sha256, dest, url=self._url)
            finally:
                body.close()
        except botocore.exceptions.ClientError as exc:
            if self._status(exc) == 404:
                raise RemoteMissing(
                    f"remote {self._url} has no blob {sha256}", url=self._url
                ) from None
            raise self._translate(exc, what) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._translate(exc, what) from None

    @contextlib.contextmanager
    def _get(self, key: str, what: str) -> Iterator[Iterator[memoryview] | None]:
        """GET ``key`` through a presigned URL (``DirectGets``): yield the body, or None for
        a 404; other answers raise like boto3's errors do (``_translate``)."""
        try:
            signed = urlsplit(
                self._client.generate_presigned_url(
                    "get_object",
                    Params={"Bucket": self._bucket, "Key": key},
                    ExpiresIn=_PRESIGN_SECONDS,
                )
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._translate(exc, what) from None
        with self._direct_gets(signed).get(f"{signed.path}?{signed.query}", what) as (
            status,
            body,
        ):
            if status == 200:
                yield body
                return
            found = _ERROR_CODE.search(read_all(body))
            code = found.group(1).decode("ascii", "replace") if found else ""
            # A missing key is absent; a missing bucket is not (every lookup would miss).
            if status == 404 and code != "NoSuchBucket":
                yield None
                return
            raise self._refusal(status, code, what)

    def _direct_gets(self, signed: SplitResult) -> DirectGets:
        where = (signed.scheme, signed.netloc)
        with self._gets_lock:
            gets = self._gets.get(where)
            if gets is None:
                gets = self._gets[where] = DirectGets(
                    self._url,
                    signed.scheme,
                    signed.hostname or "",
                    signed.port,
                    timeout=self._timeouts.read,
                    connect_timeout=self._timeouts.connect,
                    cafile=os.environ.get("AWS_CA_BUNDLE"),
                )
            return gets

    def put_blob(self, sha256: str, path: Path) -> None:
        key = self._blob_key(sha256)
        self._require_writable()
        what = f"PUT blob {sha256}"
        if self._exists(key, what):
            return
        # boto3 reads the file itself (in parts, maybe out of order): check it whole first.
        got = _file_sha256(path)
        if got != sha256:
            raise UploadIntegrityError(
                f"local blob {sha256} hashes to {got}: corrupt, not uploaded to {self._url}",
                url=self._url,
            )
        try:
            self._client.upload_file(str(path), self._bucket, key, Config=_TRANSFER)
        except boto3.exceptions.S3UploadFailedError as exc:
            raise RemoteError(f"remote {self._url}: {what} failed: {exc}", url=self._url) from None
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._translate(exc, what) from None

    def _require_writable(self) -> None:
        if not self._writable:
            raise RemoteError(f"remote {self._url} is read-only (write = false)", url=self._url)


def _file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _iter_body(body: Any) -> Iterator[bytes]:
    while chunk := body.read(_CHUNK):
        yield chunk


def _proxied(endpoint: str) -> bool:
    """True if the environment routes ``endpoint`` through a proxy (as botocore would)."""
    parts = urlsplit(endpoint)
    proxies = urllib.request.getproxies()
    return parts.scheme in proxies and not urllib.request.proxy_bypass(parts.hostname or "")
