"""Any number of buildprint processes share a project or a store: no errors, every signature
built once (the others wait, then reuse it), every stored wheel installs and imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from buildprint.fsio import HOST
from tests.support.cli import BUILDPRINT, PackageSpec, cli_env, write_project

pytestmark = pytest.mark.slow

SPECS = [PackageSpec(name) for name in ("alpha", "bravo", "charlie")] + [
    PackageSpec("delta", backend="c-ext")
]


def run_together(commands: list[tuple[Path, list[str]]]) -> list[dict[str, dict[str, str]]]:
    """Start every ``buildprint build --json`` at once; all must exit 0; their entries."""
    running = [
        subprocess.Popen(
            [BUILDPRINT, "build", "--json", *args],
            cwd=cwd,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cwd, args in commands
    ]
    results = []
    for process in running:
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, f"exit {process.returncode}:\n{out}\n{err}"
        assert "Traceback" not in err
        results.append({p["name"]: p for p in json.loads(out)["packages"]})
    return results


def assert_built_once(results: list[dict[str, dict[str, str]]]) -> None:
    built = Counter(
        name for entries in results for name, e in entries.items() if e["action"] == "built"
    )
    assert built == Counter({spec.name: 1 for spec in SPECS})
    for entries in results:
        assert {e["action"] for e in entries.values()} <= {"built", "reused"}
        signatures = {name: e["signature"] for name, e in entries.items()}
        assert signatures == {name: e["signature"] for name, e in results[0].items()}


def assert_wheels_import(wheelhouse: Path, tmp_path: Path) -> None:
    wheels = sorted(wheelhouse.glob("*.whl"))
    assert len(wheels) == len(SPECS)
    target = tmp_path / "installed"
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            assert archive.testzip() is None
            archive.extractall(target)
    modules = ["alpha", "bravo", "charlie", "delta._speedups"]
    code = "; ".join(f"import {m}" for m in modules)
    subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(target)}, check=True
    )


def test_processes_on_one_project_and_store(tmp_path: Path, backend_wheels: Path) -> None:
    root = write_project(tmp_path / "project", backend_wheels, SPECS)
    results = run_together([(root, ["-j", "2"]) for _ in range(4)])  # no lock file yet
    assert_built_once(results)
    assert_wheels_import(root / "wheelhouse", tmp_path)
    verify = subprocess.run(
        [BUILDPRINT, "cache", "verify"], cwd=root, env=cli_env(), capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert not list((root / ".buildprint" / "work").iterdir())  # no build left its folder


def test_projects_sharing_one_store(tmp_path: Path, backend_wheels: Path) -> None:
    store = tmp_path / "shared-store"
    projects = [write_project(tmp_path / f"project-{n}", backend_wheels, SPECS) for n in range(3)]
    for round_ in range(2):
        if round_:  # the second round builds again after a change, all at once again
            for project in projects:
                settings = project / "packages" / "alpha.toml"
                settings.write_text(settings.read_text() + 'env = { ROUND = "2" }\n')
        results = run_together([(p, ["--store", str(store)]) for p in projects for _ in (0, 1)])
        if round_ == 0:
            assert_built_once(results)
        else:
            built = [e["action"] for r in results for n, e in r.items() if n == "alpha"]
            assert built.count("built") == 1
        for project in projects:
            assert_wheels_import(project / "wheelhouse", tmp_path / f"r{round_}-{project.name}")


def test_a_killed_run_s_work_folders_are_removed_by_the_next(
    tmp_path: Path, backend_wheels: Path
) -> None:
    root = write_project(tmp_path / "project", backend_wheels, SPECS[:1])
    work = root / ".buildprint" / "work"
    gone = subprocess.Popen(["true"])  # a pid that has exited
    gone.wait()
    left = work / f"{HOST}.{gone.pid}.alpha-1.0.xyz"
    (left / "src").mkdir(parents=True)
    (left / "src" / "big.bin").write_bytes(b"x" * 4096)
    other_host = work / "elsewhere.1.alpha-1.0.abc"  # maybe still at work on another host
    other_host.mkdir(parents=True)
    results = run_together([(root, [])])
    assert results[0]["alpha"]["action"] == "built"
    assert not left.exists()
    assert other_host.is_dir()
