"""The library entry: everything the CLI does, as calls on an Engine over a real project
(real setuptools builds from local fixture sdists, offline)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

import buildprint
from buildprint import Engine, Options
from buildprint.errors import InputError
from tests.support.cli import PackageSpec, copy_project, write_project

SPECS = [PackageSpec("alpha"), PackageSpec("beta", build_requires=("alpha",))]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    root = write_project(tmp_path_factory.mktemp("engine") / "project", backend_wheels, SPECS)
    with Engine(root) as engine:
        outcomes = engine.build(jobs=2)
    assert {o.decision.node.name: o.done for o in outcomes} == {"alpha": "built", "beta": "built"}
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Path:
    root = copy_project(built, tmp_path / "project")
    time.sleep(0.06)  # files just copied are "racily clean" for a plan started at once
    return root


def wheel(root: Path, name: str) -> Path:
    (found,) = (root / "wheelhouse").glob(f"{name}-*.whl")
    return found


def test_the_package_exports_the_engine_and_its_options() -> None:
    assert buildprint.Engine is Engine and buildprint.Options is Options
    for name in ("plan", "plan_entries", "build", "why", "show", "diff", "lock", "push"):
        assert getattr(Engine, name).__doc__, f"Engine.{name} has no docstring"
    with pytest.raises(AttributeError):
        buildprint.__getattr__("Nothing")


def test_a_second_build_reuses_and_places_nothing_new(project: Path) -> None:
    with Engine(project) as engine:
        engine.build()  # the copy's wheelhouse memo describes the original's files
    before = {p.name: p.stat().st_mtime_ns for p in (project / "wheelhouse").glob("*.whl")}
    with Engine(project) as engine:
        outcomes = engine.build()
    assert [(o.decision.node.name, o.done, o.reason) for o in outcomes] == [
        ("alpha", "reused", "same signature in the local store"),
        ("beta", "reused", "same signature in the local store"),
    ]
    after = {p.name: p.stat().st_mtime_ns for p in (project / "wheelhouse").glob("*.whl")}
    assert after == before


def test_plan_entries_use_the_snapshot_the_second_time(project: Path) -> None:
    with Engine(project) as engine:
        first = engine.plan_entries()
        assert engine.snapshot_note.endswith("; kept")
    with Engine(project) as engine:
        again = engine.plan_entries()
        assert engine.snapshot_note == "used: nothing it rests on changed"
        assert "planner" not in engine.__dict__  # answered without opening the planner
    assert again == first and {e.action for e in first} == {"reuse"}


def test_why_show_and_diff_after_a_change(project: Path) -> None:
    settings = project / "packages" / "alpha.toml"
    settings.write_text(settings.read_text() + 'env = { ALPHA_LEVEL = "2" }\n')
    with Engine(project) as engine:
        explained = engine.why("ALPHA")
        assert explained.decision.action == "build"
        assert [c.path for c in explained.changes] == ["env/ALPHA_LEVEL"]
        current = engine.show("alpha")
        stored = engine.show(str(wheel(project, "alpha")))
        assert explained.closest is not None
        assert stored.signature == explained.closest.signature != current.signature
        assert engine.show(stored.signature).signature == stored.signature
        manifest_file = project / "alpha.json"
        manifest_file.write_bytes(current.to_bytes())
        compared = engine.diff(str(wheel(project, "alpha")), str(manifest_file))
        assert [c.path for c in compared.changes] == ["env/ALPHA_LEVEL"]
        assert (compared.old.signature, compared.new.signature) == (
            stored.signature,
            current.signature,
        )
        # beta builds against alpha's artifact: it waits, compared by a provisional manifest.
        beta = engine.why("beta")
        assert beta.decision.action == "pending" and beta.decision.pending_on == ("alpha",)
        assert any(c.path.startswith("deps") for c in beta.changes)
        with pytest.raises(InputError, match="not built yet"):
            engine.show("beta")
        with pytest.raises(InputError, match="not among the requirements"):
            engine.why("gamma")


def test_show_and_diff_of_files_need_no_project(tmp_path: Path, built: Path) -> None:
    elsewhere = tmp_path / "not-a-project"
    elsewhere.mkdir()
    (elsewhere / "buildprint.toml").write_text("this is [not toml\n")
    with Engine(elsewhere) as engine:
        manifest = engine.show(str(wheel(built, "alpha")))
        assert manifest.package.name == "alpha"
        assert engine.diff(str(wheel(built, "beta")), str(wheel(built, "beta"))).changes == ()
    assert "project" not in engine.__dict__


def test_store_records_verify_and_garbage(project: Path) -> None:
    with Engine(project) as engine:
        records = engine.records()
        assert [(r.name, r.version) for r in records] == [("alpha", "1.0"), ("beta", "1.0")]
        assert engine.verify_store() == []
        orphan = engine.store.put_blob_bytes(b"referenced by no record")
        assert engine.store.has_blob(orphan)
        blob = engine.store.blob_path(orphan)
        assert blob is not None
        young = engine.store.put_blob_bytes(b"just written, maybe by a build at work")
        two_hours_ago = time.time() - 7200
        os.utime(blob, (two_hours_ago, two_hours_ago))
        # collect_garbage returns a GcReport (what went, in counts and bytes), not a count.
        report = engine.collect_garbage()
        assert report.blobs >= 1 and report.blob_bytes >= len(b"referenced by no record")
        assert not engine.store.has_blob(orphan)
        assert engine.store.has_blob(young)  # within the grace period
        assert [r.signature for r in engine.records()] == [r.signature for r in records]


def test_lock_upgrade_rewrites_the_lock(project: Path) -> None:
    lock = project / "buildprint.lock"
    before = lock.read_text()
    lock.write_text(before.replace("[packages.alpha]", "[packages.alpha]\n# edited"))
    with Engine(project) as engine:
        nodes = engine.lock(upgrade=True)
    assert [n.name for n in nodes] == ["alpha", "beta"]
    assert all(n.lock_error is None for n in nodes)
    assert lock.read_text() == before


def test_key_and_remote_commands_without_a_remote(project: Path) -> None:
    with Engine(project) as engine:
        key = engine.generate_key()
        assert key.startswith("ed25519:") and engine.generate_key() == key
        with pytest.raises(InputError, match="no remote configured"):
            engine.push()
        with pytest.raises(InputError, match=r"no \[\[remote\]\]"):
            engine.list_remotes(configured=True)
    with Engine(project, Options(store=project / "other-store")) as engine:
        assert engine.records() == []
        assert engine.store_dir == (project / "other-store").resolve()


def test_publish_refuses_an_empty_wheelhouse(tmp_path: Path) -> None:
    (tmp_path / "buildprint.toml").write_text("")
    with Engine(tmp_path) as engine, pytest.raises(InputError, match="no wheels to publish"):
        engine.publish("http://127.0.0.1:9/")


def test_plan_json_round_trip_of_entries(project: Path) -> None:
    with Engine(project) as engine:
        entries = engine.plan_entries()
    kept = json.loads((project / ".buildprint" / "memo" / "plan.json").read_bytes())
    assert [e["name"] for e in kept["entries"]] == [e.name for e in entries]
