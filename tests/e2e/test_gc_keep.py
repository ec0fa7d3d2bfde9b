"""End to end: ``cache gc --keep-current``, ``--max-age`` and ``--max-size`` on a real project
through the CLI. What the current plan reuses stays (the next plan reuses everything), what
was superseded goes with its blobs, each removed record is printed with why."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.support.cli import (
    PackageSpec,
    build,
    copy_project,
    plan,
    run_cli,
    write_project,
    write_sdist,
)

ALPHA, BETA = PackageSpec("alpha"), PackageSpec("beta", build_requires=("alpha",))
DAY = 86400


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, backend_wheels: Path) -> Path:
    """alpha 1.0 and beta built, then alpha 1.1 (and beta again, against it): the store holds
    the superseded alpha 1.0 and beta-on-1.0 builds beside the current ones."""
    root = write_project(tmp_path_factory.mktemp("gc") / "project", backend_wheels, [ALPHA, BETA])
    first = build(root)
    sdist = write_sdist(root, replace(ALPHA, version="1.1"))
    settings = root / "packages" / "alpha.toml"
    settings.write_text(settings.read_text().replace("alpha-1.0.tar.gz", sdist.name))
    requirements = root / "requirements.txt"
    requirements.write_text(requirements.read_text().replace("alpha==1.0", "alpha==1.1"))
    second = build(root)
    assert {n: e["action"] for n, e in second.items()} == {"alpha": "built", "beta": "built"}
    (root / "signatures.json").write_text(
        json.dumps({"old": {n: e["signature"] for n, e in first.items()},
                    "new": {n: e["signature"] for n, e in second.items()}})
    )  # fmt: skip
    return root


@pytest.fixture
def project(built: Path, tmp_path: Path) -> Path:
    return copy_project(built, tmp_path / "project")


def _signatures(project: Path) -> dict[str, dict[str, str]]:
    return json.loads((project / "signatures.json").read_text())  # type: ignore[no-any-return]


def _stored(project: Path) -> set[str]:
    return {p.stem for p in (project / ".buildprint" / "ac").glob("*.json")}


def _gc(project: Path, *args: str) -> dict[str, Any]:
    result = run_cli(project, "cache", "gc", "--json", *args)
    assert result.code == 0, result.stdout + result.stderr
    return result.json()  # type: ignore[no-any-return]


def _store_bytes(project: Path) -> int:
    store = project / ".buildprint"
    return sum(p.stat().st_size for p in [*store.glob("ac/*.json"), *store.glob("cas/*/*")])


def _unused_for(project: Path, signature: str, seconds: float) -> None:
    """Make a build last used (stored, used by a run, its blobs written) ``seconds`` ago."""
    store = project / ".buildprint"
    when = time.time() - seconds
    record = store / "ac" / f"{signature}.json"
    paths = [record, store / "used" / signature]
    paths += [
        store / "cas" / a["sha256"][:2] / a["sha256"]
        for a in json.loads(record.read_text())["artifacts"]
    ]
    for path in paths:
        if path.exists():
            os.utime(path, (when, when))


def test_keep_current_keeps_what_the_plan_reuses_and_removes_the_rest(project: Path) -> None:
    old, new = _signatures(project)["old"], _signatures(project)["new"]
    assert _stored(project) == {*old.values(), *new.values()}
    # Each superseded build goes with its wheel and, when its build was traced, what it read.
    blobs = 0
    for signature in old.values():
        record = json.loads((project / ".buildprint" / "ac" / f"{signature}.json").read_text())
        blobs += len(record["artifacts"]) + (1 if record.get("reads") else 0)
    # --grace 0: the superseded builds' blobs were written seconds ago, by this test's fixture.
    report = _gc(project, "--keep-current", "--grace", "0")
    assert _stored(project) == set(new.values())
    removed = {(r["name"], r["version"], r["signature"], r["reason"]) for r in report["records"]}
    assert removed == {
        ("alpha", "1.0", old["alpha"], "not current"),
        ("beta", "1.0", old["beta"], "not current"),
    }
    assert report["blobs"] == blobs >= 2 and report["bytes"] > 0
    assert report["kept_records"] == 2 and report["store_bytes"] == _store_bytes(project)
    assert report["removed"] == 2 + blobs + report["other"] + report["quarantined"]
    # The current builds and their blobs are whole: a plan reuses all, verify finds nothing.
    assert {n: e["action"] for n, e in plan(project).items()} == {
        "alpha": "reuse",
        "beta": "reuse",
    }
    assert run_cli(project, "cache", "verify").code == 0
    if blobs > 2:  # traced builds: what the current ones read is kept with them
        assert "source tree (" in run_cli(project, "audit", "alpha").stdout


def test_keep_current_prints_each_record_it_removes(project: Path) -> None:
    old = _signatures(project)["old"]
    result = run_cli(project, "cache", "gc", "--keep-current")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"removed alpha 1.0 {old['alpha'][:16]}: not current" in lines
    assert f"removed beta 1.0 {old['beta'][:16]}: not current" in lines
    # Their blobs are younger than the default grace hour: kept for now, said so in bytes.
    summary = [line for line in lines if line.startswith("removed ") and " file(s): " in line]
    assert len(summary) == 1 and "2 record(s), 0 blob(s) (" in summary[0], result.stdout
    assert "kept 2 record(s)" in summary[0]


def test_keep_current_follows_the_requirements_given(project: Path) -> None:
    new = _signatures(project)["new"]
    report = _gc(project, "--keep-current", "alpha==1.1", "--grace", "0")
    assert _stored(project) == {new["alpha"]}
    assert {r["name"] for r in report["records"]} == {"alpha", "beta"}


def test_max_age_removes_the_builds_no_run_used_for_that_long(project: Path) -> None:
    sigs = _signatures(project)
    for signature in [*sigs["old"].values(), *sigs["new"].values()]:
        _unused_for(project, signature, 10 * DAY)
    # A build run reuses the current builds: that is a use, the superseded ones get none.
    assert {e["action"] for e in build(project).values()} == {"reused"}
    report = _gc(project, "--max-age", "5")
    assert {(r["name"], r["version"], r["reason"]) for r in report["records"]} == {
        ("alpha", "1.0", "unused"),
        ("beta", "1.0", "unused"),
    }
    assert report["blobs"] == 2  # theirs, written 10 days ago
    assert _stored(project) == set(sigs["new"].values())
    assert _gc(project, "--max-age", "5")["records"] == []


def test_max_size_removes_the_least_recently_used_until_under_it(project: Path) -> None:
    sigs = _signatures(project)
    for age, signature in enumerate(
        [sigs["old"]["alpha"], sigs["old"]["beta"], sigs["new"]["alpha"], sigs["new"]["beta"]]
    ):
        _unused_for(project, signature, (10 - age) * DAY)  # old alpha the least recent
    record = project / ".buildprint" / "ac" / f"{sigs['old']['alpha']}.json"
    limit = _store_bytes(project) - record.stat().st_size
    report = _gc(project, "--max-size", str(limit))
    assert [(r["name"], r["version"], r["reason"]) for r in report["records"]] == [
        ("alpha", "1.0", "over size")
    ]
    assert report["store_bytes"] <= limit and not report["over_size"]
    assert report["max_size"] == limit
    # A limit in units; nothing left can go but what the plan needs: all of it, then said so.
    report = _gc(project, "--max-size", "1KiB", "--grace", "0")
    assert report["max_size"] == 1024 and report["kept_records"] == 0
    assert {n: e["action"] for n, e in plan(project).items()}["alpha"] == "build"


def test_bad_gc_options_are_usage_errors_and_remove_nothing(project: Path) -> None:
    before = _stored(project)
    bad = run_cli(project, "cache", "gc", "--max-size", "10XB")
    assert bad.code == 2 and "--max-size" in bad.stderr and "10XB" in bad.stderr
    no_flag = run_cli(project, "cache", "gc", "alpha")
    assert no_flag.code == 2 and "--keep-current" in no_flag.stderr
    negative = run_cli(project, "cache", "gc", "--max-age", "-1")
    assert negative.code == 2
    assert _stored(project) == before
