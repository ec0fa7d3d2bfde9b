"""One graph built on a real Dask cluster (``dask scheduler``, ``dask worker`` processes with
their own folders and ``HOME``s) sharing an nginx WebDAV remote: every build runs on a
worker, the wheels are the bytes a local build makes, and a second run never touches the
cluster."""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import BUILDPRINT, PackageSpec, cli_env, run_cli, write_project
from tests.support.sdists import extract_sdist
from tests.support.servers.dask import DaskCluster, signing_key, worker_builds
from tests.support.servers.nginx import NginxDav

pytestmark = [pytest.mark.servers, pytest.mark.slow]

PRIVATE, PUBLIC = signing_key(b"buildprint cluster test workers")
WORKER_ENV = {"BUILDPRINT_SIGNING_KEY": PRIVATE}

SPECS = [
    PackageSpec("tool"),
    PackageSpec("app", build_requires=("tool",)),
    PackageSpec("cfast", backend="c-ext"),
    PackageSpec("plain", backend="flit_core"),
]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    running = DaskCluster(tmp_path / "cluster").start()
    try:
        yield running
    finally:
        running.stop()


def _project(root: Path, index: Path, remote: str, specs: list[PackageSpec] = SPECS) -> Path:
    remote_toml = f'[[remote]]\nurl = "{remote}"\nwrite = true\ntrusted-keys = ["{PUBLIC}"]\n'
    project = write_project(root, index, specs, project_toml=remote_toml)
    return project


def _tree_source(project: Path, name: str) -> None:
    """Make ``name``'s source a folder (a tree the coordinator tars for the workers)."""
    sdist = next((project / "dist").glob(f"{name}-*.tar.gz"))
    tree = extract_sdist(sdist, project / "trees")
    (project / "packages" / f"{name}.toml").write_text(
        f'source = {{ path = "{tree.relative_to(project)}" }}\n'
    )


def _wheels(project: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in (project / "wheelhouse").glob("*.whl")
    }


def test_every_build_runs_on_a_worker_and_matches_a_local_build(
    tmp_path: Path, backend_wheels: Path, http_url: str, cluster: DaskCluster
) -> None:
    workers = [cluster.add_worker(n, env=WORKER_ENV) for n in ("w1", "w2")]
    project = _project(tmp_path / "coordinator", backend_wheels, http_url)
    _tree_source(project, "plain")
    (project / "patches" / "cfast").mkdir(parents=True)
    (project / "patches" / "cfast" / "0001-note.patch").write_text(
        "--- a/NOTE.txt\n+++ b/NOTE.txt\n@@ -0,0 +1 @@\n+patched on a worker\n"
    )
    result = run_cli(project, "build", "--json", "--executor", cluster.url)
    assert result.code == 0, result.stdout + result.stderr
    packages = result.packages()
    assert {n: p["action"] for n, p in packages.items()} == dict.fromkeys(
        ("tool", "app", "cfast", "plain"), "built"
    )
    assert {p["worker"] for p in packages.values()} <= {"w1", "w2"}
    assert all(p["worker"] for p in packages.values())
    # Each package built once, on one worker.
    held = worker_builds(workers)
    for entry in packages.values():
        assert len(held.get(f"{entry['name']}-1.0", [])) == 1, (entry["name"], held)

    # The same project built here, without a cluster or remote: the same wheels, byte for byte.
    local = _project(tmp_path / "local", backend_wheels, http_url)
    _tree_source(local, "plain")
    (local / "patches").mkdir(exist_ok=True)
    import shutil

    shutil.copytree(project / "patches", local / "patches", dirs_exist_ok=True)
    toml = (local / "buildprint.toml").read_text().split("[[remote]]")[0]
    (local / "buildprint.toml").write_text(toml)
    local_run = run_cli(local, "build", "--json")
    assert local_run.code == 0, local_run.stderr
    assert {n: p["signature"] for n, p in local_run.packages().items()} == {
        n: p["signature"] for n, p in packages.items()
    }
    assert _wheels(local) == _wheels(project)

    # A second run reuses everything: the executor is a closed port, never dialled.
    again = run_cli(project, "build", "--json", "--executor", "dask://127.0.0.1:9")
    assert again.code == 0, again.stderr
    assert {p["action"] for p in again.packages().values()} == {"reused"}


def test_a_worker_killed_mid_build_loses_nothing(
    tmp_path: Path,
    backend_wheels: Path,
    http_url: str,
    nginx_server: NginxDav,
    cluster: DaskCluster,
) -> None:
    workers = {n: cluster.add_worker(n, env=WORKER_ENV) for n in ("w1", "w2")}
    slow = PackageSpec(
        "slow",
        files={"setup.py": "import time\ntime.sleep(6)\nfrom setuptools import setup\nsetup()\n"},
    )
    project = _project(tmp_path / "coordinator", backend_wheels, http_url, [slow])
    run = subprocess.Popen(
        [BUILDPRINT, "build", "--json", "--executor", cluster.url],
        cwd=project,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline and run.poll() is None:
        for worker in workers.values():
            if any((worker.store / "work").glob("*slow-1.0*")):
                victim = worker
        time.sleep(0.1)
    assert victim is not None, "no worker started building"
    victim.kill()
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0, stdout + stderr
    import json

    (entry,) = json.loads(stdout)["packages"]
    assert entry["action"] == "built"
    assert entry["worker"] != victim.name
    # The remote holds exactly one entry for the package, and it verifies.
    listed = run_cli(project, "cache", "ls", "--remote", http_url, "--json")
    assert listed.code == 0, listed.stderr
    assert listed.stdout.count(entry["signature"]) >= 1
    verify = run_cli(project, "cache", "verify", "--remote", http_url)
    assert verify.code == 0, verify.stdout + verify.stderr
