"""The graph and the planner on real fixture sdists and a real local store, nothing built.

Locking is the one step replaced (by a fixed set of build requirements): it needs a backend in
a fresh environment and is tested in tests/resolve and tests/e2e; here it only feeds the graph.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement

from buildprint.errors import BuildFailed, InputError
from buildprint.plan.decision import Decision
from buildprint.plan.graph import LockContext, PackageNode, load_graph
from buildprint.plan.inputs import InputCollector
from buildprint.plan.planner import Planner
from buildprint.project.project import Project
from buildprint.project.settings import PackageSettings
from buildprint.resolve.index import PackageIndex
from buildprint.resolve.lockfile import Lock, LockedBuildDeps
from buildprint.resolve.sources import ResolvedSource, SourceResolver
from buildprint.signature.manifest import Manifest
from buildprint.store.local import LocalStore
from buildprint.store.memo import Memo
from buildprint.store.record import ActionRecord, Artifact
from tests.support.cli import PackageSpec, write_project
from tests.support.remotes import StoreAsRemote


class Locker:
    """A lock step that pins fixed requirements per package and counts its calls."""

    def __init__(self, requires: dict[str, list[str]] | None = None) -> None:
        self.requires = requires or {}
        self.calls: list[str] = []
        self.failing: set[str] = set()

    def __call__(
        self,
        name: str,
        previous: LockedBuildDeps | None,
        source: ResolvedSource,
        patches: list[Path],
        settings: PackageSettings,
        context: LockContext,
    ) -> LockedBuildDeps:
        self.calls.append(name)
        if name in self.failing:
            raise BuildFailed(f"{name}: backend failed\nlog tail")
        # Asked for install requirements (a build tool of another package), it has none.
        runtime: list[str] | None = [] if context.install_requirements else None
        return LockedBuildDeps(requires=self.requires.get(name, []), wheels=[], runtime=runtime)


class Run:
    """One project opened the way the engine opens it, over one store."""

    def __init__(
        self, root: Path, locker: Locker, store: Path | None = None, **planner: object
    ) -> None:
        self.project = Project.load(root)
        store = store or root / ".buildprint"
        self.store = LocalStore(store)
        self.memo = Memo(store / "memo" / "inputs.json")
        self.resolver = SourceResolver(
            self.project.root, PackageIndex(str(root / "dist")), self.memo
        )
        self.lock = Lock()
        self.locker = locker
        self.collector = InputCollector(self.project, self.memo, environ={})
        self.planner = Planner(self.collector, self.store, **planner)  # type: ignore[arg-type]

    def graph(self, *names: str) -> list[PackageNode]:
        wanted = names or [r.name for r in self.project.requirements()]
        requirements = [Requirement(f"{n}==1.0") for n in wanted]
        return load_graph(self.project, self.resolver, self.lock, requirements, self.locker)

    def plan(self) -> dict[str, Decision]:
        return {d.node.name: d for d in self.planner.plan(self.graph())}

    def store_build(self, decision: Decision) -> ActionRecord:
        """Store ``decision`` as if built: a record with one (fake-content) wheel blob."""
        assert decision.manifest is not None
        data = f"wheel of {decision.node.name} {decision.signature}".encode()
        wheel = f"{decision.node.name}-1.0-py3-none-any.whl"
        sha = self.store.put_blob_bytes(data)
        record = ActionRecord(
            signature=decision.manifest.signature,
            name=decision.node.name,
            version=decision.node.version,
            manifest=decision.manifest.to_json(),
            artifacts=(Artifact(wheel, sha, len(data), sha),),
        )
        self.store.put_record(record)
        return record

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    specs = [PackageSpec("alpha"), PackageSpec("beta"), PackageSpec("gamma")]
    return write_project(tmp_path / "project", tmp_path / "no-index", specs)


def open_run(
    root: Path,
    requires: dict[str, list[str]] | None = None,
    store: Path | None = None,
    **planner: object,
) -> Run:
    return Run(root, Locker(requires), store, **planner)


def test_graph_orders_dependencies_first_and_locks_each_package_once(project: Path) -> None:
    run = open_run(project, {"alpha": ["beta>=1", "setuptools"], "beta": ["gamma"]})
    nodes = run.graph()
    assert [n.name for n in nodes] == ["gamma", "beta", "alpha"]
    assert {n.name: n.deps for n in nodes} == {"gamma": (), "beta": ("gamma",), "alpha": ("beta",)}
    assert sorted(run.locker.calls) == ["alpha", "beta", "gamma"]
    run.graph()  # the lock holds them now, for the same source
    assert sorted(run.locker.calls) == ["alpha", "beta", "gamma"]
    run.close()


def test_graph_locks_again_when_the_source_is_patched(project: Path) -> None:
    run = open_run(project)
    run.graph()
    (project / "patches" / "beta").mkdir(parents=True)
    (project / "patches" / "beta" / "0001-x.patch").write_text("--- a/x\n+++ b/x\n")
    run.locker.calls.clear()
    run.graph()
    assert run.locker.calls == ["beta"]
    run.close()


def test_graph_reports_a_cycle_and_a_failed_lock(project: Path) -> None:
    run = open_run(project, {"alpha": ["beta"], "beta": ["alpha"]})
    # Found while locking (a build tool is loaded before its dependent's lock completes), the
    # cycle is explained at once, each step with the requirement making it.
    with pytest.raises(
        InputError,
        match="dependency cycle in build requirements: alpha -> beta -> alpha: "
        r"alpha \(packages/alpha.toml.*\) requires 'beta' to build",
    ):
        run.graph("alpha", "beta")
    other = open_run(project)
    other.locker.failing.add("beta")
    nodes = {n.name: n for n in other.graph()}
    assert nodes["beta"].lock_error is not None and "backend failed" in nodes["beta"].lock_error
    assert nodes["alpha"].lock_error is None
    decision = other.planner.decide(nodes["beta"], {})
    assert decision.action == "build"
    assert decision.reason == "its build requirements cannot be locked: beta: backend failed"
    run.close()
    other.close()


def test_never_built_then_reused_then_changed_inputs_name_the_component(project: Path) -> None:
    run = open_run(project)
    first = run.plan()
    assert {n: d.action for n, d in first.items()} == dict.fromkeys(first, "build")
    assert first["alpha"].reason == "never built" and first["alpha"].changes == ()
    for decision in first.values():
        run.store_build(decision)
    assert {d.action for d in run.plan().values()} == {"reuse"}

    (project / "packages" / "beta.toml").write_text(
        (project / "packages" / "beta.toml").read_text() + 'env = { CFLAGS = "-O1" }\n'
    )
    changed = open_run(project)
    decisions = changed.plan()
    beta = decisions["beta"]
    assert beta.action == "build" and beta.reason == "inputs changed"
    assert [c.path for c in beta.changes] == ["env/CFLAGS"]
    assert beta.closest == first["beta"].signature
    assert beta.entry().changed == ("env/CFLAGS",)
    assert decisions["alpha"].action == "reuse"
    run.close()
    changed.close()


def test_artifact_mode_dependents_wait_for_a_dependency_to_build(project: Path) -> None:
    run = open_run(project, {"alpha": ["beta"]})
    decisions = run.plan()
    assert decisions["beta"].action == "build"
    alpha = decisions["alpha"]
    assert alpha.action == "pending" and alpha.pending_on == ("beta",)
    assert alpha.manifest is None and alpha.reason == "waits for beta"

    # why: a provisional manifest, the dependency's artifact stated as to come.
    run.store_build(decisions["gamma"])
    explained = run.planner.explain("alpha", list(decisions.values()))
    assert explained.closest is None  # alpha was never stored

    # Once beta's build is stored, alpha gets a signature from beta's artifact.
    run.store_build(decisions["beta"])
    again = open_run(project, {"alpha": ["beta"]}).plan()
    assert again["beta"].action == "reuse"
    assert again["alpha"].action == "build" and again["alpha"].manifest is not None
    deps = again["alpha"].manifest.components["deps"].value
    assert isinstance(deps, dict) and "beta" in deps
    run.close()


def test_force_and_reuse_by_version(project: Path) -> None:
    run = open_run(project)
    for decision in run.plan().values():
        run.store_build(decision)
    forced = open_run(project, force=["Beta"]).plan()
    assert forced["beta"].action == "build" and forced["beta"].reason == "forced"
    assert forced["alpha"].action == "reuse"

    (project / "packages" / "alpha.toml").write_text(
        (project / "packages" / "alpha.toml").read_text() + "rebuild = 1\n"
    )
    by_version = open_run(project, reuse_by_version=["alpha"]).plan()
    alpha = by_version["alpha"]
    assert alpha.action == "reuse"
    assert alpha.reason == "reuse by version: an existing wheel of the same version"
    assert [c.path for c in alpha.changes] == ["rebuild"]
    assert alpha.record is not None and alpha.closest == alpha.record.signature
    assert alpha.record.signature != alpha.signature
    run.close()


def test_remote_records_are_asked_once_per_wave_and_give_fetch(
    project: Path, tmp_path: Path
) -> None:
    elsewhere = open_run(project, store=tmp_path / "elsewhere")
    decisions = elsewhere.plan()
    remote_store = LocalStore(tmp_path / "remote-store")
    for decision in decisions.values():
        record = elsewhere.store_build(decision)
        blob = elsewhere.store.blob_path(record.artifacts[0].sha256)
        assert blob is not None
        remote_store.put_blob(blob)
        remote_store.put_record(record)
    elsewhere.close()
    remote = StoreAsRemote(remote_store)
    run = open_run(project, {"alpha": ["beta"]}, remotes=remote)
    fetched = run.plan()
    assert {n: d.action for n, d in fetched.items()} == {
        "beta": "fetch",
        "gamma": "fetch",
        "alpha": "build",  # signed against the artifact beta's remote record names
    }
    # Wave by wave: beta and gamma together, then alpha (which needs beta's result).
    assert [sorted(asked) for asked in remote.asked] == [
        sorted([fetched["beta"].signature or "", fetched["gamma"].signature or ""]),
        [fetched["alpha"].signature],
    ]
    assert fetched["beta"].record is not None
    assert (
        Manifest.from_json(fetched["beta"].record.manifest).signature == fetched["beta"].signature
    )
    run.close()
    remote_store.close()
