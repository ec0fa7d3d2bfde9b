"""Diffs name component/key paths and recurse into dependencies."""

from __future__ import annotations

from buildprint.inputs.plugin import HOOK_NAMES
from buildprint.signature.compose import DependencyInput, SignatureInputs, compose
from buildprint.signature.diff import ABSENT, PLUGIN_HOOKS, changed_paths, diff
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


def plugin_value(
    code: dict[str, str], third_party: dict[str, str | None] | None = None
) -> dict[str, object]:
    """A ``plugin`` component value of module ``plugins.mypkg`` (docs/plugin-digest.md)."""
    return {"module": "plugins.mypkg", "code": code, "third-party": third_party or {}}


def test_a_changed_plugin_is_reported_per_hook_and_per_thing_it_reaches() -> None:
    old = manifest(
        "a",
        "1" * 64,
        plugin=plugin_value(
            {
                "plugins.mypkg:update_env": "1" * 64,
                "plugins.mypkg:signature": "2" * 64,
                "plugins.mypkg:<module>": "3" * 64,
                "plugins.helpers:SCALE": "4" * 64,
            },
            {"numpy": "2.1.0"},
        ),
    )
    new = manifest(
        "a",
        "1" * 64,
        plugin=plugin_value(
            {
                "plugins.mypkg:update_env": "9" * 64,
                "plugins.mypkg:<module>": "8" * 64,
                "plugins.helpers:SCALE": "4" * 64,
                "plugins.helpers:OFFSET": "7" * 64,
                "plugins.mypkg:build_wheel": "6" * 64,
            },
            {"numpy": "2.2.0"},
        ),
    )
    changes = diff(old, new)
    # Hooks first, then the code they reach, then the rest; unchanged entries not at all.
    assert [(c.path, c.note) for c in changes] == [
        ("plugin/hooks/build_wheel", "hook build_wheel added to plugins.mypkg"),
        ("plugin/hooks/signature", "hook signature removed from plugins.mypkg"),
        ("plugin/hooks/update_env", "hook update_env changed in plugins.mypkg"),
        ("plugin/code/plugins.helpers:OFFSET", "plugins.helpers.OFFSET now reached from the hooks"),
        ("plugin/code/plugins.mypkg:<module>", "import-time code of plugins.mypkg changed"),
        ("plugin/third-party/numpy", ""),
    ]
    assert (changes[2].old, changes[2].new) == ("1" * 64, "9" * 64)
    assert (changes[-1].old, changes[-1].new) == ("2.1.0", "2.2.0")
    assert changes[0].old is ABSENT and changes[1].new is ABSENT


def test_a_plugin_added_or_moved_to_another_module() -> None:
    bare = manifest("a", "1" * 64)
    hooked = manifest("a", "1" * 64, plugin=plugin_value({"plugins.mypkg:update_env": "1" * 64}))
    (added,) = diff(bare, hooked)
    assert added.path == "plugin" and added.old is None
    moved = manifest(
        "a",
        "1" * 64,
        plugin={"module": "plugins.other", "code": {"plugins.other:update_env": "1" * 64}},
    )
    assert changed_paths(diff(hooked, moved)) == [
        "plugin/hooks/update_env",  # a hook of the module the package names now
        "plugin/code/plugins.mypkg:update_env",  # the one it named before, no longer reached
        "plugin/module",
    ]  # no third-party entry on either side: an absent mapping is an empty one


def test_plugin_hook_names_are_the_collectors() -> None:
    assert PLUGIN_HOOKS == HOOK_NAMES
