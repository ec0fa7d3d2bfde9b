"""The plan snapshot: a no-op plan is answered from it, and anything its plan rested on —
including what a plugin hook looked at — makes the next plan a full one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from packaging.utils import canonicalize_name, parse_wheel_filename

from buildprint import Engine, Options
from buildprint.plan.decision import PlanEntry
from buildprint.plan.snapshot import collect_checks
from buildprint.store.local import LocalStore
from tests.support.cli import (
    BUILDPRINT,
    PackageSpec,
    build,
    cli_env,
    copy_project,
    run_cli,
    write_project,
)
from tests.support.sdists import make_sdist

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


def test_the_callers_compiler_variables_are_no_input(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    full = warm(project)
    # Builds get only declared variables (docs/build-environment.md): the caller's CC or
    # PATH changes nothing a plan rests on.
    monkeypatch.setenv("CC", "")
    monkeypatch.setenv("PATH", os.pathsep.join(["/nonexistent", os.environ["PATH"]]))
    entries, from_snapshot = plan(project)
    assert from_snapshot and entries == full


# -- sources an index chose from folders on this machine ---------------------------------


def page(links: dict[str, str]) -> str:
    """A PEP 503 project page: file name -> href."""
    anchors = "".join(f'<a href="{href}">{name}</a><br/>\n' for name, href in links.items())
    return f"<!DOCTYPE html><html><body>\n{anchors}</body></html>\n"


def sdist_bytes(tmp: Path, name: str, extra: str = "") -> bytes:
    """A real ``<name>-1.0.tar.gz``; ``extra`` adds a module (other bytes, other content)."""
    files = {f"{name}/extra.py": extra} if extra else None
    return make_sdist(
        tmp / f"sdist-{name}-{len(extra)}", name, "1.0", "setuptools", files
    ).read_bytes()


def publish(root: Path, name: str, data: bytes, filename: str | None = None) -> None:
    """Put ``data`` in the local index at ``index/files/`` and (re)write ``name``'s page."""
    filename = filename or f"{name}-1.0.tar.gz"
    (root / "index" / "files").mkdir(parents=True, exist_ok=True)
    (root / "index" / "files" / filename).write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    target = root / "index" / "simple" / name / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page({filename: f"../../files/{filename}#sha256={digest}"}))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    """A project whose sources an index chose: ``gamma`` from a find-links folder, ``delta``
    from a local PEP 503 tree (which also offers the build backends)."""
    tmp = tmp_path_factory.mktemp("indexed")
    root = tmp / "project"
    simple = root / "index" / "simple"
    for wheel in sorted(backend_wheels.glob("*.whl")):
        name = canonicalize_name(parse_wheel_filename(wheel.name)[0])
        (simple / name).mkdir(parents=True, exist_ok=True)
        links = {
            wheel.name: f"{wheel.as_uri()}#sha256={hashlib.sha256(wheel.read_bytes()).hexdigest()}"
        }
        (simple / name / "index.html").write_text(page(links))
    publish(root, "delta", sdist_bytes(tmp, "delta"))
    (simple / "index.html").write_text(
        page({p.name: f"{p.name}/" for p in sorted(simple.iterdir())})
    )
    (root / "links").mkdir()
    (root / "links" / "gamma-1.0.tar.gz").write_bytes(sdist_bytes(tmp, "gamma"))
    (root / "packages").mkdir()
    (root / "buildprint.toml").write_text(
        '[project]\nindex-url = "index/simple"\nfind-links = ["links"]\n'
    )
    (root / "requirements.txt").write_text("gamma==1.0\ndelta==1.0\n")
    entries = build(root)
    assert {n: e["action"] for n, e in entries.items()} == {"gamma": "built", "delta": "built"}
    return root


@pytest.fixture
def index_project(indexed: Path, tmp_path: Path) -> Path:
    root = copy_project(indexed, tmp_path / "project")
    time.sleep(0.06)
    return root


def warm_indexed(root: Path, **options: object) -> None:
    full, from_snapshot = plan(root, **options)
    assert not from_snapshot and actions(full) == {"gamma": "reuse", "delta": "reuse"}
    again, from_snapshot = plan(root, **options)
    assert from_snapshot and again == full


@pytest.mark.parametrize(
    "change",
    [
        "find-links sdist replaced",
        "find-links sdist preferred",
        "index page appears",
        "index page relinked",
    ],
)
def test_a_source_the_index_chose_on_this_machine_invalidates_it(
    index_project: Path, tmp_path: Path, change: str
) -> None:
    warm_indexed(index_project)
    other = sdist_bytes(tmp_path, "gamma", "X = 2\n")
    links = index_project / "links"
    if change == "find-links sdist replaced":  # same name, other bytes, written in place
        (links / "gamma-1.0.tar.gz").write_bytes(other)
    elif change == "find-links sdist preferred":  # a new file the index ranks first
        (links / "Gamma-1.0.tar.gz").write_bytes(other)
    elif change == "index page appears":  # the index comes before find-links
        publish(index_project, "gamma", other)
    elif change == "index page relinked":
        publish(index_project, "delta", sdist_bytes(tmp_path, "delta", "Y = 3\n"), "d-1.0.tar.gz")
    entries, from_snapshot = plan(index_project)
    assert not from_snapshot
    rebuilt = "delta" if change == "index page relinked" else "gamma"
    assert actions(entries)[rebuilt] == "build"
    assert "source" in next(e for e in entries if e.name == rebuilt).changed


def test_a_find_links_option_folder_is_checked_too(index_project: Path, tmp_path: Path) -> None:
    settings = index_project / "buildprint.toml"
    settings.write_text(settings.read_text().replace('find-links = ["links"]\n', ""))
    given = tmp_path / "given"
    (index_project / "links").rename(given)
    time.sleep(0.06)
    warm_indexed(index_project, find_links=(str(given),))
    (given / "Gamma-1.0.tar.gz").write_bytes(sdist_bytes(tmp_path, "gamma", "X = 2\n"))
    entries, from_snapshot = plan(index_project, find_links=(str(given),))
    assert not from_snapshot
    assert actions(entries) == {"gamma": "build", "delta": "reuse"}


def test_given_the_index_the_checks_hold_what_it_offered(
    index_project: Path, tmp_path: Path
) -> None:
    given = tmp_path / "given"
    given.mkdir()
    with Engine(index_project, Options(find_links=(str(given),))) as engine:
        decisions = engine.plan()
        checks = collect_checks(
            engine.project,
            decisions,
            engine.collector,
            engine.store,
            requirement_files=[],
            ranged=[],
            environ=os.environ,
            index=engine.index,
        )
    simple = index_project / "index" / "simple"
    for path in (
        index_project / "links" / "gamma-1.0.tar.gz",  # the file chosen, read in place
        index_project / "links",  # the folders listed for it
        given,
        simple / "delta" / "index.html",  # the page delta's file was chosen from
        simple / "gamma" / "index.html",  # what the index probed for gamma before find-links
        simple / "gamma",
        simple,
    ):
        assert str(path) in checks.files, path
    assert checks.files[str(simple / "gamma")] is None
    # The locked build requirements are taken by the lock's sha256, never read by a plan.
    assert not any(name.endswith(".whl") for name in checks.files)


def test_the_cli_prints_the_same_plan_and_says_why_it_planned_in_full(
    index_project: Path, tmp_path: Path
) -> None:
    first = run_cli(index_project, "plan", "--json")
    assert first.code == 0, first.stderr
    assert first.json()["snapshot"] == "full plan; kept"
    again = run_cli(index_project, "plan", "--json")
    assert again.json() == {**first.json(), "snapshot": "used: nothing it rests on changed"}
    snapshot_file(index_project).unlink()
    full = run_cli(index_project, "plan").stdout  # in full, and kept
    assert "gamma" in full and run_cli(index_project, "plan").stdout == full
    assert run_cli(index_project, "plan", "--json").json()["snapshot"].startswith("used:")
    sdist = index_project / "links" / "gamma-1.0.tar.gz"
    sdist.write_bytes(sdist_bytes(tmp_path, "gamma", "X = 2\n"))
    changed = run_cli(index_project, "plan", "--json").json()
    why = f"full plan: {sdist.resolve()} changed; not kept: not every package is reused"
    assert changed["snapshot"] == why
    assert {e["name"]: e["action"] for e in changed["packages"]} == {
        "gamma": "build",
        "delta": "reuse",
    }


# -- host hooks that ask what machine they run on ----------------------------------------

SITE = '''\
"""The host hook: the machine's name (asked one of four ways) and how many CPUs it may use."""

import os
import platform
import socket


def host_signature(pkg):
    way = os.environ.get("BP_NODE_PROBE", "uname")
    if way == "platform":
        node = platform.node()
    elif way == "socket":
        node = socket.gethostname()
    elif way == "proc":
        with open("/proc/sys/kernel/hostname") as name:
            node = name.read().strip()
    else:
        node = os.uname().nodename
    return {"node": node, "cpus": str(len(os.sched_getaffinity(0)))}
'''

#: Runs the rest of its command line in a new UTS namespace named ``bp-elsewhere``.
ELSEWHERE = (
    "import os, socket, sys; socket.sethostname('bp-elsewhere'); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


def require_tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is missing: install util-linux (apt-get install util-linux)")
    return found


def other_host() -> list[str]:
    """A command prefix that runs a process on a host of another name."""
    unshare = require_tool("unshare")
    if subprocess.run([unshare, "--uts", "true"], capture_output=True, check=False).returncode:
        pytest.skip("unshare --uts is not permitted here (it needs CAP_SYS_ADMIN)")
    return [unshare, "--uts", sys.executable, "-c", ELSEWHERE]


def fewer_cpus() -> list[str]:
    """A command prefix that runs a process allowed on one CPU only."""
    taskset = require_tool("taskset")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs a process allowed on two CPUs")
    return [taskset, "-c", str(min(os.sched_getaffinity(0)))]


def cli_plan(root: Path, env: dict[str, str], prefix: Sequence[str] = ()) -> dict[str, Any]:
    done = subprocess.run(
        [*prefix, BUILDPRINT, "plan", "--json"],
        cwd=root,
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    root = tmp_path_factory.mktemp("hosted") / "project"
    write_project(
        root,
        backend_wheels,
        [BETA],
        project_toml='[signature]\nhost-hook = "plugins.site:host_signature"\n',
    )
    (root / "plugins").mkdir()
    (root / "plugins" / "site.py").write_text(SITE)
    assert build(root)["beta"]["action"] == "built"
    return root


@pytest.mark.parametrize(
    ("way", "what", "prefix", "component"),
    [
        ("uname", "host probe os.uname()", other_host, "host/node"),
        ("platform", "host probe platform.uname()", other_host, "host/node"),
        ("socket", "host probe socket.gethostname()", other_host, "host/node"),
        ("proc", "/proc/sys/kernel/hostname", other_host, "host/node"),  # its stat stays put
        ("uname", "host probe os.sched_getaffinity(0)", fewer_cpus, "host/cpus"),
    ],
)
def test_a_host_probe_the_hook_asked_is_asked_again(
    hosted: Path,
    tmp_path: Path,
    way: str,
    what: str,
    prefix: Callable[[], list[str]],
    component: str,
) -> None:
    elsewhere = prefix()
    root = copy_project(hosted, tmp_path / "project")
    time.sleep(0.06)
    env = {"BP_NODE_PROBE": way}
    full = cli_plan(root, env)
    assert full["snapshot"] == "full plan; kept"
    assert [e["action"] for e in full["packages"]] == ["reuse"]
    assert cli_plan(root, env) == {**full, "snapshot": "used: nothing it rests on changed"}
    moved = cli_plan(root, env, elsewhere)
    why = f"full plan: {what} changed; not kept: not every package is reused"
    assert moved["snapshot"] == why
    (beta,) = moved["packages"]
    assert beta["action"] == "build" and component in beta["changed"]
    back = cli_plan(root, env)
    assert back["snapshot"] == "full plan; kept" and back["packages"] == full["packages"]
