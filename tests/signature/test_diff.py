"""Diffs name component/key paths and recurse into dependencies."""

from __future__ import annotations

from buildprint.signature.compose import DependencyInput, SignatureInputs, compose
from buildprint.signature.diff import ABSENT, changed_paths, diff
from buildprint.signature.manifest import Manifest, PackageRef


def manifest(
    name: str, source: str, deps: tuple[DependencyInput, ...] = (), **kw: object
) -> Manifest:
    return compose(SignatureInputs(package=PackageRef(name, "1.0"), source=source, deps=deps, **kw))  # type: ignore[arg-type]


def test_identical_manifests_have_no_diff() -> None:
    a = manifest("a", "1" * 64, env={"X": "1"})
    assert diff(a, a) == []


def test_added_and_removed_keys() -> None:
    a = manifest("a", "1" * 64, env={"X": "1"})
    b = manifest("a", "1" * 64, env={"Y": "2"})
    changes = diff(a, b)
    assert changed_paths(changes) == ["env/X", "env/Y"]
    assert changes[0].new is ABSENT and changes[1].old is ABSENT
    assert changes[0].to_json()["removed"] is True


def test_recursion_into_dependency_manifests() -> None:
    dep_old = manifest("lib", "1" * 64)
    dep_new = manifest("lib", "2" * 64)
    app_old = manifest(
        "app", "3" * 64, (DependencyInput("lib", "1.0", dep_old.signature, "a" * 64),)
    )
    app_new = manifest(
        "app", "3" * 64, (DependencyInput("lib", "1.0", dep_new.signature, "b" * 64),)
    )
    store = {m.signature: m for m in (dep_old, dep_new)}
    changes = diff(app_old, app_new, store.get)
    assert changed_paths(changes) == ["deps/lib"]
    assert [c.path for c in changes[0].children] == ["source"]
    because = changes[0].to_json()["because"]
    assert isinstance(because, list) and isinstance(because[0], dict)
    assert because[0]["new"] == "2" * 64
