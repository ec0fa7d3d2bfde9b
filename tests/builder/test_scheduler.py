"""The build run: a failed fetch builds instead (the plan's decision kept as made, the run's
note on the outcome); a fetch done before the run is reported as fetched."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildprint import Engine, Options
from buildprint.builder.outcome import Outcome
from buildprint.builder.scheduler import Builder
from buildprint.errors import StoreError
from buildprint.plan.decision import Decision
from buildprint.plan.planner import Planner
from buildprint.store.local import LocalStore
from buildprint.store.record import ActionRecord
from tests.support.cli import PackageSpec, copy_project, write_project
from tests.support.remotes import StoreAsRemote


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    """A project built once into the store ``<root>/remote-store`` (standing for a remote)."""
    root = write_project(
        tmp_path_factory.mktemp("sched") / "project",
        backend_wheels,
        [
            PackageSpec("alpha"),
            PackageSpec("beta"),
        ],
    )
    with Engine(root, Options(store=root / "remote-store")) as engine:
        assert {o.done for o in engine.build()} == {"built"}
    return root


@pytest.fixture
def project(elsewhere: Path, tmp_path: Path) -> Path:
    """A fresh copy: its own store empty, the built one beside it."""
    return copy_project(elsewhere, tmp_path / "project")


def run(root: Path, fetch: object, fetched: frozenset[str] = frozenset()) -> list[Outcome]:
    """Build ``root`` into its own (empty) store, with the built store as its remote."""
    events: list[tuple[str, str, str]] = []
    with LocalStore(root / "remote-store") as remote, Engine(root) as engine:
        planner = Planner(engine.collector, engine.store, remotes=StoreAsRemote(remote))
        builder = Builder(
            planner,
            engine.preparer,
            engine.store,
            engine.wheelhouse,
            engine.preparer.logs,
            fetch=fetch,  # type: ignore[arg-type]
            fetched=fetched,
        )

        def progress(event: str, item: Decision | Outcome) -> None:
            decision = item if isinstance(item, Decision) else item.decision
            events.append((event, decision.node.name, decision.action))

        outcomes = builder.run(engine.graph(), 1, progress)
    assert ("start", "alpha", "fetch") in events
    return outcomes


def test_a_failed_fetch_builds_instead_and_says_why(project: Path) -> None:
    def fetch(record: ActionRecord) -> None:
        raise StoreError(f"{record.name}: the remote went away")

    outcomes = {o.decision.node.name: o for o in run(project, fetch)}
    alpha = outcomes["alpha"]
    assert alpha.done == "built"
    assert alpha.decision.action == "fetch"  # the plan's decision, as made
    assert alpha.decision.reason == "same signature in a remote cache"
    assert alpha.note == "fetch failed (alpha: the remote went away); building instead"
    assert alpha.reason == alpha.note
    assert alpha.record is not None and alpha.record.signature == alpha.decision.signature
    assert (project / "wheelhouse" / alpha.record.artifacts[0].filename).is_file()


def test_a_fetch_done_before_the_run_is_reported_as_fetched(project: Path) -> None:
    def fetch(record: ActionRecord) -> None:
        raise AssertionError("fetched before the run: not fetched again")

    with LocalStore(project / "remote-store") as remote, Engine(project) as engine:
        for record in remote.records():  # what Engine.build's up-front fetch_many does
            for artifact in record.artifacts:
                blob = remote.blob_path(artifact.sha256)
                assert blob is not None
                engine.store.put_blob(blob)
            engine.store.put_record(record)
        signatures = frozenset(r.signature for r in remote.records())
    outcomes = run(project, fetch, signatures)
    assert [(o.decision.node.name, o.done, o.reason) for o in outcomes] == [
        ("alpha", "fetched", "same signature in a remote cache"),
        ("beta", "fetched", "same signature in a remote cache"),
    ]
