"""Session-wide fixtures: real servers (nginx WebDAV, Ceph radosgw, pypiserver) on 127.0.0.1.

Each server starts once per session on a free port, keeps its data in a temp folder and is
stopped at the end. A missing server binary makes the fixture fail with an install hint: a
test that needs a server must not silently pass without one. Every test whose fixtures reach
one of these servers is marked ``servers`` here, so ``-m "not servers"`` never starts one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from buildprint.signature.canonical import digest_bytes
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord, Artifact
from tests.support.bootstrap import bootstrap_sdists
from tests.support.servers._proc import ServerError
from tests.support.servers.nginx import NginxDav, start_nginx
from tests.support.servers.pypi import PypiServer, start_pypiserver
from tests.support.servers.radosgw import RadosGateway, start_radosgw
from tests.support.wheels import backend_wheels, wheel_paths_for

__all__ = [
    "backend_wheels",
    "bootstrap_sdists",
    "wheel_paths_for",
]  # fixtures shared by every layer's tests

#: Credentials of the throwaway servers. Unique per session so a secret-canary test can search
#: logs and messages for them without false hits.
_SESSION = uuid.uuid4().hex[:12]
HTTP_USER = "bp-user"
HTTP_PASSWORD = f"bp-http-password-{_SESSION}"
HTTP_TOKEN = f"bp-bearer-token-{_SESSION}"

#: The fixtures that start a real server. A fixture built on one (``s3_bucket``, ``s3_env``,
#: ``http_url``, a module's own) is in a test's fixture closure with it, so these suffice.
SERVER_FIXTURES = frozenset({"nginx_server", "radosgw_server", "pypi_server"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``servers`` every test whose fixture closure starts a server: none can forget it."""
    for item in items:
        if isinstance(item, pytest.Function) and SERVER_FIXTURES.intersection(item.fixturenames):
            item.add_marker(pytest.mark.servers)


@pytest.fixture(scope="session")
def nginx_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NginxDav]:
    """nginx with WebDAV: ``/open/`` (no auth), ``/basic/`` (basic auth), ``/bearer/``."""
    try:
        server = start_nginx(
            tmp_path_factory.mktemp("nginx"),
            user=HTTP_USER,
            password=HTTP_PASSWORD,
            token=HTTP_TOKEN,
        )
    except ServerError as exc:
        pytest.fail(f"cannot start nginx: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def radosgw_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadosGateway]:
    """Ceph mon + memstore OSD + radosgw, with one S3 user; ~15 s to start."""
    try:
        server = start_radosgw(tmp_path_factory.mktemp("ceph"))
    except ServerError as exc:
        pytest.fail(f"cannot start radosgw: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pypi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PypiServer]:
    """pypiserver accepting uploads from ``bp-user`` with a per-session password."""
    try:
        server = start_pypiserver(
            tmp_path_factory.mktemp("pypi"), user=HTTP_USER, password=HTTP_PASSWORD
        )
    except ServerError as exc:
        pytest.fail(f"cannot start pypiserver: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_bucket(radosgw_server: RadosGateway) -> str:
    """One bucket for the session; tests isolate themselves with a fresh prefix."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=radosgw_server.endpoint,
        aws_access_key_id=radosgw_server.access_key,
        aws_secret_access_key=radosgw_server.secret_key,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="buildprint-cache")
    return "buildprint-cache"


@pytest.fixture
def s3_env(
    radosgw_server: RadosGateway, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> str:
    """Point boto3 at radosgw with the test user's keys; return a fresh ``s3://`` URL."""
    monkeypatch.setenv("BUILDPRINT_S3_ENDPOINT", radosgw_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", radosgw_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", radosgw_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    # A developer's own AWS profile must not leak into (or break) the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return f"s3://{s3_bucket}/{uuid.uuid4().hex}"


@pytest.fixture
def http_url(nginx_server: NginxDav, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh, unauthenticated cache base on nginx (``/open/<uuid>``)."""
    for name in ("BUILDPRINT_REMOTE_TOKEN", "BUILDPRINT_REMOTE_USER", "BUILDPRINT_REMOTE_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return f"{nginx_server.url}/open/{uuid.uuid4().hex}"


RecordFactory = Callable[..., ActionRecord]


@pytest.fixture
def make_record() -> RecordFactory:
    """``make_record(local, sizes=(1000,), name="alpha")``: random blobs stored in ``local`` and
    a record naming them, under a fresh random signature."""

    def factory(
        local: LocalStore, sizes: tuple[int, ...] = (1000,), name: str = "alpha"
    ) -> ActionRecord:
        artifacts = []
        for i, size in enumerate(sizes):
            data = os.urandom(size)
            digest = local.put_blob_bytes(data)
            artifacts.append(
                Artifact(
                    filename=f"{name}-1.0-py3-none-any-{i}.whl",
                    sha256=digest,
                    size=size,
                    content_digest=digest_bytes(data[::-1]),
                )
            )
        signature = digest_bytes(os.urandom(32))
        return ActionRecord(
            signature=signature,
            name=name,
            version="1.0",
            manifest={"signature": signature, "scheme": 1, "components": {}},
            artifacts=tuple(artifacts),
        )

    return factory
