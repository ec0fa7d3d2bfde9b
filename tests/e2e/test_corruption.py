"""End to end: a damaged local store is detected, repaired and never served. Real fixture
builds through the CLI; every wheel the wheelhouse ends with is whole (zip test, its sha256
the record's) and installs with pip from the wheelhouse alone."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from buildprint.fsio import HOST
from tests.support.cli import PackageSpec, cli_env, copy_project, run_cli, write_project

pytestmark = pytest.mark.slow

SPECS = [PackageSpec("alpha"), PackageSpec("bravo", build_requires=("alpha",))]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    """One project built once; each test damages a copy of it."""
    root = write_project(tmp_path_factory.mktemp("corruption") / "project", backend_wheels, SPECS)
    result = run_cli(root, "build", "--json")
    assert result.code == 0, result.stdout + result.stderr
    return root


def _records(project: Path) -> dict[str, dict[str, object]]:
    """Each package's stored record (the newest, by name)."""
    found: dict[str, dict[str, object]] = {}
    for path in sorted((project / ".buildprint" / "ac").glob("*.json")):
        record = json.loads(path.read_bytes())
        found[record["name"]] = record
    return found


def _artifact(project: Path, name: str) -> dict[str, str]:
    artifacts = _records(project)[name]["artifacts"]
    assert isinstance(artifacts, list)
    return artifacts[0]  # type: ignore[no-any-return]


def _blob(project: Path, digest: str) -> Path:
    return project / ".buildprint" / "cas" / digest[:2] / digest


def _flip(path: Path) -> None:
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:100])


def _lines_naming(text: str, digest: str) -> int:
    return sum(digest in line for line in text.splitlines())


def _build(project: Path, *args: str) -> tuple[dict[str, dict[str, str]], str]:
    result = run_cli(project, "build", "--json", *args)
    assert result.code == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.packages(), result.stderr


def _assert_wheelhouse_sound(project: Path, tmp_path: Path) -> None:
    """Every record's wheel is in the wheelhouse with the record's bytes; pip installs them
    all from the wheelhouse alone."""
    wheelhouse = project / "wheelhouse"
    for name in ("alpha", "bravo"):
        artifact = _artifact(project, name)
        wheel = wheelhouse / artifact["filename"]
        assert hashlib.sha256(wheel.read_bytes()).hexdigest() == artifact["sha256"]
        with zipfile.ZipFile(wheel) as archive:
            assert archive.testzip() is None
        memo = json.loads((wheelhouse / "simple" / ".placed.json").read_text())
        assert memo[wheel.name]["sha256"] == artifact["sha256"]
    target = tmp_path / "installed"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(target),
            "--find-links",
            str(wheelhouse),
            "alpha",
            "bravo",
        ],
        check=True,
    )
    subprocess.run(
        [sys.executable, "-c", "import alpha, bravo"],
        env={**os.environ, "PYTHONPATH": str(target)},
        check=True,
    )


@pytest.mark.parametrize("damage", [_flip, _truncate], ids=["flipped", "truncated"])
def test_a_damaged_wheel_blob_is_built_again_with_one_warning(
    built: Path, tmp_path: Path, damage: object
) -> None:
    project = copy_project(built, tmp_path / "project")
    artifact = _artifact(project, "alpha")
    assert callable(damage)
    damage(_blob(project, artifact["sha256"]))
    shutil.rmtree(project / "wheelhouse")  # the wheel must leave the store again

    entries, stderr = _build(project)
    assert entries["alpha"]["action"] == "built"
    assert entries["bravo"]["action"] == "reused"
    # One warning, naming the package and the blob (and where the bytes went).
    assert _lines_naming(stderr, artifact["sha256"]) == 1, stderr
    (warning,) = [line for line in stderr.splitlines() if artifact["sha256"] in line]
    assert "alpha" in warning
    quarantined = list((project / ".buildprint" / "quarantine").iterdir())
    assert [p.name.partition(".")[0] for p in quarantined] == [artifact["sha256"]]
    _assert_wheelhouse_sound(project, tmp_path)

    # Repaired for good: the next build reuses, quietly, and the store verifies.
    entries, stderr = _build(project)
    assert {e["action"] for e in entries.values()} == {"reused"}
    assert artifact["sha256"] not in stderr
    assert run_cli(project, "cache", "verify").code == 0


def test_a_damaged_dependency_wheel_is_built_again_before_its_dependent(
    built: Path, tmp_path: Path
) -> None:
    project = copy_project(built, tmp_path / "project")
    alpha = _artifact(project, "alpha")
    _flip(_blob(project, alpha["sha256"]))
    # alpha's wheelhouse file is whole, so only bravo's build takes alpha's wheel out of
    # the store (into its build environment): that copy finds the damage.
    entries, stderr = _build(project, "--force", "bravo")
    assert entries["bravo"]["action"] == "built"
    assert _lines_naming(stderr, alpha["sha256"]) == 1, stderr
    blob = _blob(project, alpha["sha256"])
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == alpha["sha256"]
    _assert_wheelhouse_sound(project, tmp_path)
    assert run_cli(project, "cache", "verify").code == 0


def test_force_replaces_a_corrupted_wheelhouse_file(built: Path, tmp_path: Path) -> None:
    project = copy_project(built, tmp_path / "project")
    artifact = _artifact(project, "alpha")
    _flip(project / "wheelhouse" / artifact["filename"])
    entries, _stderr = _build(project, "--force", "alpha")
    assert entries["alpha"]["action"] == "built"
    _assert_wheelhouse_sound(project, tmp_path)


def test_a_reuse_replaces_a_corrupted_wheelhouse_file(built: Path, tmp_path: Path) -> None:
    project = copy_project(built, tmp_path / "project")
    artifact = _artifact(project, "alpha")
    _truncate(project / "wheelhouse" / artifact["filename"])
    entries, _stderr = _build(project)
    assert entries["alpha"]["action"] == "reused"
    _assert_wheelhouse_sound(project, tmp_path)


def test_cache_verify_lists_problems_and_gc_removes_them(built: Path, tmp_path: Path) -> None:
    project = copy_project(built, tmp_path / "project")
    store = project / ".buildprint"
    alpha, bravo = _artifact(project, "alpha"), _artifact(project, "bravo")
    _flip(_blob(project, alpha["sha256"]))
    _truncate(_blob(project, bravo["sha256"]))
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # What a SIGKILL while locking leaves: the process's temp folder with pyproject_hooks'
    # input.json in it, and a temp file of an interrupted write.
    orphan = store / "work" / f"{HOST}.{dead}.tmp.abcd1234"
    (orphan / "tmpq1w2e3").mkdir(parents=True)
    (orphan / "tmpq1w2e3" / "input.json").write_text("{}")
    leftover = store / "tmp" / f"{HOST}.{dead}.0123456789ab0.tmp"
    leftover.write_bytes(b"half a record")

    verify = run_cli(project, "cache", "verify")
    assert verify.code == 1
    lines = verify.stderr.splitlines()
    assert any(
        str(_blob(project, alpha["sha256"])) in line and "corrupt blob" in line for line in lines
    )
    assert any(
        str(_blob(project, bravo["sha256"])) in line and "truncated blob: 100 bytes" in line
        for line in lines
    )
    assert any(str(orphan) in line and "orphaned temp folder" in line for line in lines)
    assert any(str(leftover) in line and "stray temp file" in line for line in lines)

    gc = run_cli(project, "cache", "gc")
    assert gc.code == 0, gc.stdout + gc.stderr
    assert not orphan.exists() and not leftover.exists()
    assert not _blob(project, alpha["sha256"]).exists()
    assert not _blob(project, bravo["sha256"]).exists()
    assert run_cli(project, "cache", "verify").code == 0

    # The damaged builds are gone; the next build makes them again.
    entries, _stderr = _build(project)
    assert {e["action"] for e in entries.values()} == {"built"}
    _assert_wheelhouse_sound(project, tmp_path)


_AUDITED_CLI = """
import atexit, sys
opened, log = [], sys.argv.pop(1)
sys.addaudithook(lambda event, args: event == "open" and opened.append(str(args[0])))
atexit.register(lambda: open(log, "w").write("\\n".join(opened)))
from buildprint.cli.main import main
sys.argv[0] = "buildprint"
main()
"""


def test_a_noop_plan_and_a_noop_build_read_no_blob(built: Path, tmp_path: Path) -> None:
    project = copy_project(built, tmp_path / "project")
    # A copied wheelhouse has new inodes: the first build checks (copies) it once again.
    _build(project)
    cas = str(project / ".buildprint" / "cas")
    for command in ("plan", "build"):
        log = tmp_path / f"{command}.opened"
        done = subprocess.run(
            [sys.executable, "-c", _AUDITED_CLI, str(log), command, "--json"],
            cwd=project,
            env=cli_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        actions = {e["action"] for e in json.loads(done.stdout)["packages"]}
        assert actions == ({"reuse"} if command == "plan" else {"reused"})
        opened = log.read_text().splitlines()
        assert opened, "the audit hook saw nothing"
        assert [path for path in opened if path.startswith(cas)] == []
