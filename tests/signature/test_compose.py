"""Composing manifests: defaults, policy, hooks, dependency modes, and single-input changes."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from buildprint.errors import InputError, PolicyError
from buildprint.signature.compose import (
    DependencyInput,
    PendingDependencies,
    SignatureInputs,
    compose,
    reduce_version,
)
from buildprint.signature.diff import changed_paths, diff
from buildprint.signature.manifest import Manifest, PackageRef
from buildprint.signature.policy import STANDARD_COMPONENTS, Policy, SignatureDraft


def base_inputs(**overrides: Any) -> SignatureInputs:
    values: dict[str, Any] = {
        "package": PackageRef("Alpha_Pkg", "1.2.3"),
        "source": "a" * 64,
        "patches": {"0001-fix.patch": "b" * 64},
        "settings": {"config-settings": {"--build-option": "--cpp"}},
        "env": {"CFLAGS": "-O2"},
        "plugin": {"module": "plugins.alpha", "code": {"plugins.alpha:signature": "c" * 64}},
        "build_deps": {"setuptools": {"version": "70.0.0", "sha256": "d" * 64}},
        "deps": (DependencyInput("numpy", "1.26.4", signature="e" * 64, artifact="f" * 64),),
        "toolchain": {"python": "3.11", "abi": "cpython-311-x86_64-linux-gnu"},
        "host": {"cuda": "12.4"},
        "configs": {"cuda_arch": "sm_80", "debug": "0"},
        "rebuild": 0,
    }
    values.update(overrides)
    return SignatureInputs(**values)


def test_defaults_have_every_standard_component() -> None:
    manifest = compose(base_inputs())
    assert set(manifest.components) == set(STANDARD_COMPONENTS)
    assert manifest.package.name == "alpha-pkg"
    assert manifest.value("deps") == {"numpy": {"mode": "artifact", "artifact": "f" * 64}}


def test_manifest_round_trips_and_detects_tampering() -> None:
    manifest = compose(base_inputs())
    again = Manifest.from_bytes(manifest.to_bytes())
    assert again == manifest and again.signature == manifest.signature
    data = manifest.to_json()
    components = data["components"]
    assert isinstance(components, dict) and isinstance(components["env"], dict)
    components["env"]["value"] = {"CFLAGS": "-O3"}
    with pytest.raises(InputError, match="digest does not match"):
        Manifest.from_json(data)


# One entry per input: how to change it, and exactly which paths must then differ.
SINGLE_CHANGES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("source", {"source": "9" * 64}, ["source"]),
    ("patch edited", {"patches": {"0001-fix.patch": "9" * 64}}, ["patches/0001-fix.patch"]),
    (
        "patch added",
        {"patches": {"0001-fix.patch": "b" * 64, "0002-x.patch": "1" * 64}},
        ["patches/0002-x.patch"],
    ),
    ("settings", {"settings": {"config-settings": {}}}, ["settings"]),
    ("env", {"env": {"CFLAGS": "-O3"}}, ["env/CFLAGS"]),
    # A changed plugin is reported per entry of its code (issue 12): here the signature hook
    # is gone from the module.
    ("plugin", {"plugin": {"module": "plugins.alpha"}}, ["plugin/hooks/signature"]),
    (
        "build dep",
        {"build_deps": {"setuptools": {"version": "71.0.0", "sha256": "d" * 64}}},
        ["build-deps/setuptools"],
    ),
    (
        "dep artifact",
        {"deps": (DependencyInput("numpy", "1.26.4", "e" * 64, "0" * 64),)},
        ["deps/numpy"],
    ),
    (
        "toolchain",
        {"toolchain": {"python": "3.12", "abi": "cpython-311-x86_64-linux-gnu"}},
        ["toolchain/python"],
    ),
    ("host", {"host": {"cuda": "12.6"}}, ["host/cuda"]),
    ("config", {"configs": {"cuda_arch": "sm_90", "debug": "0"}}, ["configs/cuda_arch"]),
    ("rebuild", {"rebuild": 1}, ["rebuild"]),
    ("version", {"package": PackageRef("alpha-pkg", "1.2.4")}, ["version"]),
]


@pytest.mark.parametrize(
    ("label", "change", "expected"), SINGLE_CHANGES, ids=[c[0] for c in SINGLE_CHANGES]
)
def test_single_input_change_changes_exactly_its_component(
    label: str, change: dict[str, Any], expected: list[str]
) -> None:
    old, new = compose(base_inputs()), compose(base_inputs(**change))
    assert changed_paths(diff(old, new)) == expected
    assert old.signature != new.signature


@given(
    st.sampled_from(SINGLE_CHANGES),
    st.dictionaries(st.sampled_from(["CFLAGS", "LDFLAGS", "CC", "X"]), st.text(max_size=5)),
)
def test_property_single_change_is_isolated_for_any_env(
    case: tuple[str, dict[str, Any], list[str]], env: dict[str, str]
) -> None:
    _, change, expected = case
    env = {**env, "CFLAGS": "-O2"}
    change = {"env": {**env, "CFLAGS": "-O3"}} if "env" in change else change
    old = compose(base_inputs(env=env))
    new = compose(base_inputs(**{"env": env, **change}))
    assert changed_paths(diff(old, new)) == expected
    # Env order never matters.
    reordered = dict(reversed(list(env.items())))
    assert compose(base_inputs(env=reordered)).signature == old.signature


def test_unhashed_configs_are_recorded_not_hashed() -> None:
    policy = Policy(configs=("cuda_arch",))
    a = compose(base_inputs(), policy)
    b = compose(base_inputs(configs={"cuda_arch": "sm_80", "debug": "1"}), policy)
    assert a.signature == b.signature
    assert b.recorded["configs"] == {"debug": "1"}
    c = compose(base_inputs(configs={"cuda_arch": "sm_90", "debug": "0"}), policy)
    assert changed_paths(diff(a, c)) == ["configs/cuda_arch"]


def test_remove_and_version_granularity() -> None:
    policy = Policy(remove=("toolchain", "host"), version="minor")
    a = compose(base_inputs(), policy)
    assert "toolchain" not in a.components and "host" not in a.components
    assert a.value("version") == "1.2"
    b = compose(base_inputs(package=PackageRef("alpha-pkg", "1.2.9"), host={"cuda": "13"}), policy)
    assert a.signature == b.signature
    assert b.recorded["version"] == "1.2.9"


def test_clear_keeps_only_what_is_declared() -> None:
    policy = Policy(clear=True, version="major", extra={"abi": "2"}, deps={"numpy": "minor"})
    manifest = compose(base_inputs(), policy)
    assert set(manifest.components) == {"version", "extra", "deps"}
    assert manifest.value("deps") == {"numpy": {"mode": "minor", "version": "1.26"}}


@pytest.mark.parametrize(
    ("mode", "changed_dep", "same"),
    [
        ("artifact", DependencyInput("numpy", "1.26.5", "1" * 64, "f" * 64), True),
        ("artifact", DependencyInput("numpy", "1.26.4", "e" * 64, "0" * 64), False),
        ("signature", DependencyInput("numpy", "1.26.4", "1" * 64, "f" * 64), False),
        ("minor", DependencyInput("numpy", "1.26.5", "1" * 64, "0" * 64), True),
        ("minor", DependencyInput("numpy", "1.27.0", "1" * 64, "0" * 64), False),
        ("major", DependencyInput("numpy", "1.27.0", "1" * 64, "0" * 64), True),
        ("version", DependencyInput("numpy", "1.26.5", "e" * 64, "f" * 64), False),
        ("none", DependencyInput("numpy", "9.0", "1" * 64, "0" * 64), True),
    ],
)
def test_dependency_modes(mode: Any, changed_dep: DependencyInput, same: bool) -> None:
    policy = Policy(deps={"numpy": mode})
    a = compose(base_inputs(), policy)
    b = compose(base_inputs(deps=(changed_dep,)), policy)
    assert (a.signature == b.signature) is same


def test_artifact_mode_dependency_not_built_is_pending() -> None:
    with pytest.raises(PendingDependencies) as info:
        compose(base_inputs(deps=(DependencyInput("numpy", "1.26.4", "e" * 64, None),)))
    assert info.value.names == ["numpy"]
    manifest = compose(
        base_inputs(deps=(DependencyInput("numpy", "1.26.4", "e" * 64, None),)),
        Policy(deps={"numpy": "minor"}),
    )
    assert manifest.value("deps") == {"numpy": {"mode": "minor", "version": "1.26"}}


def test_hook_edits_run_after_defaults() -> None:
    def hook(sig: SignatureDraft) -> None:
        sig.remove("toolchain")
        sig.set("version", "1.2")
        sig.add("cuda", "12.4")

    manifest = compose(base_inputs(), hook=hook)
    assert "toolchain" not in manifest.components
    assert manifest.value("version") == "1.2" and manifest.value("cuda") == "12.4"


@pytest.mark.parametrize(
    "bad_hook",
    [
        lambda sig: sig.remove("nonexistent"),
        lambda sig: sig.add("env", {}),
        lambda sig: sig.set("x", 1.5),
        lambda sig: sig.set("a/b", 1),
    ],
)
def test_hook_mistakes_are_policy_errors(bad_hook: Any) -> None:
    with pytest.raises(PolicyError):
        compose(base_inputs(), hook=bad_hook)


@pytest.mark.parametrize(
    "bad",
    [
        {"remove": ("toolchains",)},
        {"version": "patch"},
        {"deps": {"numpy": "abi"}},
    ],
)
def test_policy_mistakes_are_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        Policy(**bad)


def test_reduce_version() -> None:
    assert reduce_version("2.1.0rc1", "minor") == "2.1"
    assert reduce_version("3", "minor") == "3.0"
    assert reduce_version("1!2.3", "major") == "2"
    with pytest.raises(InputError):
        reduce_version("not a version", "minor")


def test_package_name_separates_signatures() -> None:
    policy = Policy(clear=True, extra={"abi": "1"})
    a = compose(base_inputs(), policy)
    b = compose(dataclasses.replace(base_inputs(), package=PackageRef("beta", "1.2.3")), policy)
    assert a.signature != b.signature


def test_the_discovered_part_is_explained_but_never_signed() -> None:
    manifest = compose(base_inputs(), Policy())
    header = "/usr/include/foo.h"
    found = manifest.with_discovered({header: "a" * 64})
    assert found.signature == manifest.signature  # known only after the build
    assert found.discovered_inputs == {header: "a" * 64}
    assert "discovered" not in manifest.to_json()
    again = Manifest.from_bytes(found.to_bytes())
    assert again == found and again.discovered_inputs == {header: "a" * 64}
    data = found.to_json()
    part = data["discovered"]
    assert isinstance(part, dict)
    part["value"] = {header: "b" * 64}
    with pytest.raises(InputError, match="discovered part does not match"):
        Manifest.from_json(data)


def test_diff_of_two_finished_builds_names_the_system_files_that_differ() -> None:
    manifest = compose(base_inputs(), Policy())
    first = manifest.with_discovered({"/usr/include/a.h": "a" * 64, "/usr/include/b.h": "b" * 64})
    second = manifest.with_discovered({"/usr/include/a.h": "c" * 64})
    assert changed_paths(diff(first, second)) == [
        "discovered//usr/include/a.h",
        "discovered//usr/include/b.h",
    ]
    assert diff(first, first) == []
    assert diff(manifest, first) == []  # one being planned: nothing to compare yet
