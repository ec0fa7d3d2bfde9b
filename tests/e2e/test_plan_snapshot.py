"""The plan snapshot: a no-op plan is answered from it, and anything its plan rested on —
including what a plugin hook looked at — makes the next plan a full one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from buildprint import Engine, Options
from buildprint.plan.decision import PlanEntry
from buildprint.store.local import LocalStore
from tests.support.cli import PackageSpec, build, copy_project, write_project

HOOKS = '''\
"""alpha's signature hook: reads a variable, a data file and whether a path exists."""

import os
from pathlib import Path

HERE = Path(__file__).parent


def signature(pkg, sig):
    sig.add("abi", os.environ.get("ALPHA_ABI", "1"))
    sig.add("table", (HERE / "abi-table.txt").read_text())
    sig.add("accelerated", str(Path(os.environ["ALPHA_PROBE"]).exists()))
'''

ALPHA = PackageSpec("alpha", settings='plugin = "plugins.alpha"\n')
BETA = PackageSpec("beta")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    root = tmp_path_factory.mktemp("snapshot") / "project"
    write_project(root, backend_wheels, [ALPHA, BETA])
    (root / "plugins").mkdir()
    (root / "plugins" / "alpha.py").write_text(HOOKS)
    (root / "plugins" / "abi-table.txt").write_text("v1\n")
    probe = str(root.parent / "probe")
    entries = build(root, env={"ALPHA_PROBE": probe})
    assert {n: e["action"] for n, e in entries.items()} == {"alpha": "built", "beta": "built"}
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = copy_project(built, tmp_path / "project")
    monkeypatch.setenv("ALPHA_PROBE", str(tmp_path / "probe"))
    monkeypatch.delenv("ALPHA_ABI", raising=False)
    time.sleep(0.06)  # files just copied are "racily clean" for a plan started at once
    return root


def plan(root: Path, **options: object) -> tuple[list[PlanEntry], bool]:
    """The printed plan, and whether it was answered by the snapshot (nothing opened)."""
    with Engine(root, Options(**options)) as engine:  # type: ignore[arg-type]
        entries = engine.plan_entries()
        return entries, "planner" not in engine.__dict__


def snapshot_file(root: Path) -> Path:
    return root / ".buildprint" / "memo" / "plan.json"


def actions(entries: list[PlanEntry]) -> dict[str, str]:
    return {e.name: e.action for e in entries}


def warm(root: Path) -> list[PlanEntry]:
    """A full plan that keeps its snapshot, then one answered by it, with equal results."""
    full, from_snapshot = plan(root)
    assert not from_snapshot
    assert actions(full) == {"alpha": "reuse", "beta": "reuse"}
    assert snapshot_file(root).exists()
    again, from_snapshot = plan(root)
    assert from_snapshot
    assert again == full
    return full


def test_no_op_plan_is_answered_by_the_snapshot(project: Path) -> None:
    warm(project)


def test_a_variable_the_hook_read_invalidates_it_and_others_do_not(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warm(project)
    monkeypatch.setenv("UNRELATED_VARIABLE", "x")
    assert plan(project)[1]
    monkeypatch.setenv("ALPHA_ABI", "2")
    entries, from_snapshot = plan(project)
    assert not from_snapshot
    assert actions(entries) == {"alpha": "build", "beta": "reuse"}
    assert "abi" in next(e for e in entries if e.name == "alpha").changed


def test_a_file_the_hook_read_invalidates_it(project: Path) -> None:
    warm(project)
    (project / "plugins" / "abi-table.txt").write_text("v2\n")
    entries, from_snapshot = plan(project)
    assert not from_snapshot
    assert actions(entries)["alpha"] == "build"


def test_a_path_the_hook_probed_appearing_invalidates_it(project: Path, tmp_path: Path) -> None:
    warm(project)
    (tmp_path / "probe").mkdir()
    entries, from_snapshot = plan(project)
    assert not from_snapshot
    assert actions(entries)["alpha"] == "build"


@pytest.mark.parametrize(
    "change",
    ["sdist", "settings", "patch", "requirements", "lock", "record removed"],
)
def test_each_plan_input_invalidates_it(project: Path, change: str) -> None:
    before = {e.name: e.signature for e in warm(project)}
    if change == "sdist":
        sdist = next((project / "dist").glob("beta-*.tar.gz"))
        sdist.write_bytes(sdist.read_bytes())  # same bytes: the digest stays, the state moves
    elif change == "settings":
        with (project / "packages" / "beta.toml").open("a") as settings:
            settings.write("rebuild = 1\n")
    elif change == "patch":
        (project / "patches" / "beta").mkdir(parents=True)
        (project / "patches" / "beta" / "0001-x.patch").write_text(
            "--- a/beta/__init__.py\n+++ b/beta/__init__.py\n@@ -0,0 +1 @@\n+X = 1\n"
        )
    elif change == "requirements":
        (project / "requirements.txt").write_text("beta==1.0\n")
    elif change == "lock":
        lock = project / "buildprint.lock"
        lock.write_text(lock.read_text())
    elif change == "record removed":
        with LocalStore(project / ".buildprint") as store:
            assert store.remove_record(before["beta"])  # type: ignore[arg-type]
    entries, from_snapshot = plan(project)
    assert not from_snapshot
    expected = {
        "sdist": {"alpha": "reuse", "beta": "reuse"},  # same content: still reused
        "settings": {"alpha": "reuse", "beta": "build"},
        "patch": {"alpha": "reuse", "beta": "build"},
        "requirements": {"beta": "reuse"},
        "lock": {"alpha": "reuse", "beta": "reuse"},
        "record removed": {"alpha": "reuse", "beta": "build"},
    }[change]
    assert actions(entries) == expected


def test_a_hook_running_a_subprocess_keeps_no_snapshot(project: Path) -> None:
    warm(project)
    hooks = project / "plugins" / "alpha.py"
    hooks.write_text(
        hooks.read_text().replace(
            'sig.add("abi"', 'import subprocess; subprocess.run(["true"]); sig.add("abi"'
        )
    )
    for _ in range(2):
        entries, from_snapshot = plan(project)
        assert not from_snapshot
    assert not snapshot_file(project).exists()
    assert actions(entries)["alpha"] == "build"


def test_an_input_changed_as_the_plan_starts_keeps_no_snapshot(project: Path) -> None:
    settings = project / "packages" / "beta.toml"
    settings.write_text(settings.read_text())  # its ctime is now: racily clean
    entries, from_snapshot = plan(project)
    assert not from_snapshot and not snapshot_file(project).exists()
    assert actions(entries) == {"alpha": "reuse", "beta": "reuse"}


def test_forced_plans_never_use_or_keep_it(project: Path) -> None:
    warm(project)
    os.utime(snapshot_file(project))
    entries, from_snapshot = plan(project, force=("beta",))
    assert not from_snapshot
    assert actions(entries)["beta"] == "build"
    assert not snapshot_file(project).exists()  # a plan that builds leaves none behind


def test_an_empty_cc_is_the_default_compiler(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warm(project)
    monkeypatch.setenv("CC", "")
    full, from_snapshot = plan(project)
    assert not from_snapshot  # CC is checked: set-but-empty differs from unset
    assert actions(full) == {"alpha": "reuse", "beta": "reuse"}
    assert plan(project)[1]
