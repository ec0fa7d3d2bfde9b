"""One graph built on a real Dask cluster (``dask scheduler``, ``dask worker`` processes with
their own folders and ``HOME``s) sharing an nginx WebDAV remote: every build runs on a
worker, the wheels are the bytes a local build makes, and a second run never touches the
cluster."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import PackageSpec, run_cli, start_cli, write_project
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


def _start_build(project: Path, cluster: DaskCluster, *args: str) -> subprocess.Popen[str]:
    """``buildprint build --json ARGS --executor CLUSTER``, started (not awaited)."""
    return start_cli(project, "build", "--json", *args, "--executor", cluster.url)


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
    tmp_path: Path, backend_wheels: Path, http_url: str, cluster: DaskCluster
) -> None:
    workers = {n: cluster.add_worker(n, env=WORKER_ENV) for n in ("w1", "w2")}
    slow = PackageSpec(
        "slow",
        files={"setup.py": "import time\ntime.sleep(6)\nfrom setuptools import setup\nsetup()\n"},
    )
    project = _project(tmp_path / "coordinator", backend_wheels, http_url, [slow])
    run = _start_build(project, cluster)
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
    (entry,) = json.loads(stdout)["packages"]
    assert entry["action"] == "built"
    assert entry["worker"] != victim.name
    # The remote holds exactly one entry for the package, and it verifies.
    listed = run_cli(project, "cache", "ls", "--remote", http_url, "--json")
    assert listed.code == 0, listed.stderr
    (remote,) = listed.json()["remotes"]
    slow_entries = [r for r in remote["records"] if r["name"] == "slow"]
    assert [(r["signature"], r["verified"]) for r in slow_entries] == [(entry["signature"], True)]
    # ... naming the wheel the coordinator placed (cache verify re-checks its blobs).
    (placed,) = (project / "wheelhouse").glob("slow-*.whl")
    assert slow_entries[0]["wheels"] == [placed.name]
    verify = run_cli(project, "cache", "verify", "--remote", http_url)
    assert verify.code == 0, verify.stdout + verify.stderr


def test_workers_that_sign_differently_refuse_and_gpu_builds_wait_for_a_gpu_worker(
    tmp_path: Path, backend_wheels: Path, http_url: str, cluster: DaskCluster
) -> None:
    preload = tmp_path / "other_version.py"
    preload.write_text("import buildprint\nbuildprint.__version__ = '9.9.9'\n")
    cluster.add_worker(
        "other-host", env={**WORKER_ENV, "BUILDPRINT_HOST_SIGNATURE": "another-base-image"}
    )
    cluster.add_worker("other-version", env=WORKER_ENV, preload=preload)
    specs = [PackageSpec("alpha"), PackageSpec("kernel", settings="resources = { gpu = 1 }\n")]
    project = _project(tmp_path / "coordinator", backend_wheels, http_url, specs)

    # Every worker refuses alpha, each saying why; the run fails, naming them.
    refused = run_cli(project, "build", "--json", "alpha==1.0", "--executor", cluster.url)
    assert refused.code == 1, refused.stderr
    error = refused.packages()["alpha"]["error"]
    assert "no worker of the cluster accepts" in error
    assert "other-host" in error and f"host/{'BUILDPRINT_HOST_SIGNATURE'}" in error
    assert "other-version" in error and "9.9.9" in error and "0.1.0" in error

    # kernel needs a gpu: it waits, and runs once a worker with one joins.
    waiting = _start_build(project, cluster, "kernel==1.0")
    time.sleep(8)
    assert waiting.poll() is None, waiting.communicate()
    cluster.add_worker("gpu", env=WORKER_ENV, resources="gpu=1")
    stdout, stderr = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, stdout + stderr
    (kernel,) = json.loads(stdout)["packages"]
    assert (kernel["action"], kernel["worker"]) == ("built", "gpu")

    # alpha goes to the one worker that signs as the coordinator does.
    accepted = run_cli(project, "build", "--json", "alpha==1.0", "--executor", cluster.url)
    assert accepted.code == 0, accepted.stderr
    alpha = accepted.packages()["alpha"]
    assert (alpha["action"], alpha["worker"]) == ("built", "gpu")


def test_secrets_never_travel_with_a_task(
    tmp_path: Path,
    backend_wheels: Path,
    http_url: str,
    nginx_server: NginxDav,
    cluster: DaskCluster,
) -> None:
    token = f"canary-pass-{uuid.uuid4().hex}"
    secret = f"canary-setting-{uuid.uuid4().hex}"
    spec = PackageSpec("alpha", settings=f'env = {{ API_KEY = "{secret}", CFLAGS = "-O2" }}\n')
    project = _project(tmp_path / "coordinator", backend_wheels, http_url, [spec])
    toml = (project / "buildprint.toml").read_text()
    (project / "buildprint.toml").write_text(
        toml + '[signature]\nenv-pass-through = ["DEPLOY_TOKEN"]\n'
    )
    coordinator = {"DEPLOY_TOKEN": token}

    # A worker without the secret refuses, naming the variables it lacks.
    cluster.add_worker("bare", env=WORKER_ENV)
    bare = run_cli(project, "build", "--json", "--executor", cluster.url, env=coordinator)
    assert bare.code == 1
    error = bare.packages()["alpha"]["error"]
    assert "API_KEY" in error and "secret values never travel" in error
    cluster.stop_worker("bare")

    # One that has both values (from its own environment) builds.
    cluster.add_worker("keyed", env={**WORKER_ENV, "API_KEY": secret, "DEPLOY_TOKEN": token})
    built = run_cli(project, "build", "--json", "--executor", cluster.url, env=coordinator)
    assert built.code == 0, built.stderr
    assert built.packages()["alpha"]["worker"] == "keyed"

    # Neither value is in anything that travelled or was written: the remote (task specs,
    # inputs, records), the scheduler's log, the coordinator's store and output.
    travelled = b"".join(p.read_bytes() for p in nginx_server.data.rglob("*") if p.is_file())
    travelled += (cluster.root / "scheduler.log").read_bytes()
    travelled += b"".join(
        p.read_bytes() for p in (project / ".buildprint").rglob("*") if p.is_file()
    )
    travelled += (bare.stdout + bare.stderr + built.stdout + built.stderr).encode()
    assert token.encode() not in travelled
    assert secret.encode() not in travelled


def test_two_coordinators_build_each_signature_once(
    tmp_path: Path, backend_wheels: Path, http_url: str, cluster: DaskCluster
) -> None:
    workers = [cluster.add_worker(n, env=WORKER_ENV) for n in ("w1", "w2")]
    sleepy = "import time\ntime.sleep(2)\nfrom setuptools import setup\nsetup()\n"
    specs = [
        PackageSpec("base", files={"setup.py": sleepy}),
        PackageSpec("top", build_requires=("base",)),
        PackageSpec("side"),
    ]
    first = _project(tmp_path / "first", backend_wheels, http_url, specs)
    second = tmp_path / "second"
    shutil.copytree(first, second)
    runs = [_start_build(project, cluster) for project in (first, second)]
    results = [run.communicate(timeout=300) for run in runs]
    for run, (stdout, stderr) in zip(runs, results, strict=True):
        assert run.returncode == 0, stdout + stderr
    # base is built while each locks top (it builds with it): on the cluster, too.
    builds = worker_builds(workers)
    assert {name: len(found) for name, found in builds.items()} == {
        "base-1.0": 1,
        "top-1.0": 1,
        "side-1.0": 1,
    }


def test_a_cluster_build_needs_a_shared_writable_remote(
    tmp_path: Path, backend_wheels: Path
) -> None:
    project = write_project(tmp_path / "p", backend_wheels, [PackageSpec("alpha")])
    result = run_cli(project, "build", "--executor", "dask://127.0.0.1:9")
    assert result.code == 2
    assert "buildprint.toml" in result.stderr and "write = true" in result.stderr
    assert not (project / "wheelhouse").exists()
    bad = run_cli(project, "build", "--executor", "tcp://127.0.0.1:9")
    assert bad.code == 2 and "dask://HOST:PORT" in bad.stderr
    toml = project / "buildprint.toml"
    toml.write_text(toml.read_text() + '[executor]\nurl = "tcp://127.0.0.1:9"\n')
    lines = len(toml.read_text().splitlines())
    setting = run_cli(project, "plan")
    assert setting.code == 2 and f"buildprint.toml:{lines}" in setting.stderr, setting.stderr
    assert "dask://HOST:PORT" in setting.stderr


def test_a_failed_build_on_a_worker_brings_its_log_back(
    tmp_path: Path, backend_wheels: Path, http_url: str, cluster: DaskCluster
) -> None:
    cluster.add_worker("w1", env=WORKER_ENV)
    setup = (
        "import sys\nif 'bdist_wheel' in sys.argv:\n"
        "    raise SystemExit('boom-on-the-worker')\n"
        "from setuptools import setup\nsetup()\n"
    )
    specs = [PackageSpec("broken", files={"setup.py": setup}), PackageSpec("fine")]
    project = _project(tmp_path / "coordinator", backend_wheels, http_url, specs)
    result = run_cli(project, "build", "--json", "--executor", cluster.url)
    assert result.code == 1, result.stderr
    packages = result.packages()
    assert packages["fine"]["action"] == "built"
    broken = packages["broken"]
    assert broken["action"] == "failed"
    assert "on worker w1" in broken["error"]
    assert "boom-on-the-worker" in Path(broken["log"]).read_text()


def test_an_unreachable_scheduler_fails_the_builds_not_the_reuse(
    tmp_path: Path, backend_wheels: Path, http_url: str
) -> None:
    project = _project(tmp_path / "coordinator", backend_wheels, http_url, [PackageSpec("alpha")])
    toml = (project / "buildprint.toml").read_text()
    (project / "buildprint.toml").write_text(
        toml + '[executor]\nurl = "dask://127.0.0.1:9"\nconnect-timeout = 2\n'
    )
    result = run_cli(project, "build", "--json")
    assert result.code == 1, result.stderr
    error = result.packages()["alpha"]["error"]
    assert "cannot reach the Dask scheduler at dask://127.0.0.1:9" in error
    # Built here instead (no executor), the same package is then reused without the cluster.
    assert run_cli(project, "build", "--json", "--executor", "dask://127.0.0.1:9").code == 1
    (project / "buildprint.toml").write_text(toml)
    assert run_cli(project, "build").code == 0
    again = run_cli(project, "build", "--json", "--executor", "dask://127.0.0.1:9")
    assert again.code == 0 and again.packages()["alpha"]["action"] == "reused"


def test_a_worker_key_the_project_does_not_trust_is_named(
    tmp_path: Path, backend_wheels: Path, http_url: str, cluster: DaskCluster
) -> None:
    private, public = signing_key(b"a key nobody listed")
    cluster.add_worker("stranger", env={"BUILDPRINT_SIGNING_KEY": private})
    project = _project(tmp_path / "coordinator", backend_wheels, http_url, [PackageSpec("alpha")])
    result = run_cli(project, "build", "--json", "--executor", cluster.url)
    assert result.code == 1, result.stderr
    error = result.packages()["alpha"]["error"]
    assert public in error and "[[remote]] trusted-keys" in error
    assert not list((project / "wheelhouse").glob("*.whl"))
