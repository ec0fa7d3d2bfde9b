"""``buildprint cache ls/verify/gc`` on remote caches, as a user runs them (real nginx, radosgw)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from buildprint.store import open_remote
from buildprint.store.cache import RemoteCache
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord
from buildprint.store.signing import generate_key, load_signing_key
from tests.support.servers.nginx import NginxDav

pytestmark = pytest.mark.servers

RecordFactory = Callable[..., ActionRecord]
BUILDPRINT = shutil.which("buildprint") or str(Path(sys.executable).parent / "buildprint")


def _run(
    project: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "BUILDPRINT_SIGNING_KEY"}
    environ.update(env or {})
    return subprocess.run(
        [BUILDPRINT, "cache", *args, "-p", str(project)],
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _publish(
    root: Path, url: str, make_record: RecordFactory, count: int
) -> tuple[list[ActionRecord], str]:
    generate_key(root)
    key = load_signing_key(root)
    assert key is not None
    cache = RemoteCache([open_remote(url, writable=True)], LocalStore(root), [], key)
    records = [make_record(cache.local, (3_000, 500), name=f"pkg{i}") for i in range(count)]
    for record in records:
        assert cache.push(record) == {cache.remotes[0].url: True}
    return records, key.public_id


def _project(root: Path, url: str, trusted: list[str]) -> Path:
    root.mkdir(parents=True)
    keys = ", ".join(json.dumps(k) for k in trusted)
    (root / "buildprint.toml").write_text(
        f'[[remote]]\nurl = "{url}"\ntrusted-keys = [{keys}]\n', encoding="utf-8"
    )
    return root


def test_cache_ls_lists_a_remote_with_verified_names(
    tmp_path: Path, http_url: str, make_record: RecordFactory
) -> None:
    records, public = _publish(tmp_path / "publisher", http_url, make_record, 3)
    stranger, _ = _publish(tmp_path / "stranger", http_url, make_record, 1)
    project = _project(tmp_path / "project", http_url, [public])

    done = _run(project, "ls", "--remotes", "--json")
    assert done.returncode == 0, done.stderr
    (block,) = json.loads(done.stdout)["remotes"]
    assert block["url"] == http_url
    rows = {row["signature"]: row for row in block["records"]}
    assert set(rows) == {r.signature for r in records + stranger}
    for record in records:
        row = rows[record.signature]
        assert row["verified"] and row["problem"] is None
        assert (row["name"], row["version"]) == (record.name, record.version)
        assert row["wheels"] == [a.filename for a in record.artifacts]
        assert row["size"] > 0 and row["modified"].endswith("Z")
    # Signed by a key the project does not trust: listed, but not vouched for.
    row = rows[stranger[0].signature]
    assert not row["verified"] and row["name"] is None and "unknown key" in row["problem"]

    # Plain text, and signatures only for an explicit URL (no record reads at all).
    text = _run(project, "ls", "--remote", http_url)
    assert text.returncode == 0
    assert f"{records[1].name} 1.0" in text.stdout and "(not verified)" in text.stdout
    quick = _run(project, "ls", "--remote", http_url, "--signatures-only", "--json")
    quick_rows = json.loads(quick.stdout)["remotes"][0]["records"]
    assert len(quick_rows) == 4 and not any(r["verified"] or r["problem"] for r in quick_rows)
    # Listing a remote stores nothing locally.
    assert json.loads(_run(project, "ls", "--json").stdout) == {"records": []}


def test_cache_verify_remote_reports_missing_tampered_and_untrusted_entries(
    tmp_path: Path, nginx_server: NginxDav, http_url: str, make_record: RecordFactory
) -> None:
    records, public = _publish(tmp_path / "publisher", http_url, make_record, 3)
    project = _project(tmp_path / "project", http_url, [public])
    sound = _run(project, "verify", "--remotes", "--download")
    assert sound.returncode == 0, sound.stderr
    assert "0 problem(s)" in sound.stdout

    base = nginx_server.data / urlsplit(http_url).path.strip("/")
    tampered = base / "cas" / records[0].artifacts[0].sha256
    tampered.write_bytes(b"\0" + tampered.read_bytes()[1:])
    (base / "cas" / records[1].artifacts[1].sha256).unlink()

    # Existence checks only: the tampered blob is still there, the deleted one is not.
    quick = _run(project, "verify", "--remotes")
    assert quick.returncode == 1
    assert "1 problem(s)" in quick.stdout
    assert records[1].artifacts[1].sha256 in quick.stderr and "missing" in quick.stderr

    full = _run(project, "verify", "--remote", http_url, "--download")
    assert full.returncode == 1
    assert "2 problem(s)" in full.stdout
    assert "does not hash to its name" in full.stderr and records[0].signature in full.stderr

    # A project that trusts nobody else finds every record unverifiable.
    distrust = _project(tmp_path / "distrust", http_url, [])
    refused = _run(distrust, "verify", "--remotes")
    assert refused.returncode == 1 and "3 problem(s)" in refused.stdout
    assert refused.stderr.count("unknown key") == 3
    # Nothing was downloaded into the project's store by verifying.
    assert not list((tmp_path / "project" / ".buildprint" / "cas").glob("*/*"))


def test_cache_ls_and_verify_on_s3(tmp_path: Path, s3_env: str, make_record: RecordFactory) -> None:
    records, public = _publish(tmp_path / "publisher", s3_env, make_record, 2)
    project = _project(tmp_path / "project", s3_env, [public])
    done = _run(project, "ls", "--remotes", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["remotes"][0]["records"]
    assert sorted((r["name"], r["signature"]) for r in rows) == sorted(
        (r.name, r.signature) for r in records
    )
    assert all(r["verified"] and r["size"] > 0 for r in rows)
    verified = _run(project, "verify", "--remotes", "--download")
    assert verified.returncode == 0 and "0 problem(s)" in verified.stdout, verified.stderr


def test_cache_errors_and_help(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    missing = _run(project, "ls", "--remotes")
    assert missing.returncode == 2 and "no [[remote]]" in missing.stderr
    bad = _run(project, "verify", "--remote", "ftp://example/cache")
    assert bad.returncode == 2 and "scheme must be" in bad.stderr
    gc_help = _run(project, "gc", "--help")
    assert "Remote caches are not collected" in gc_help.stdout
