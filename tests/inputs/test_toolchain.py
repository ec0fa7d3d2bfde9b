"""The toolchain component names the binaries a build really runs, however they are spelled."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from buildprint.inputs.toolchain import (
    DEFAULT_SEARCH_PATH,
    interpreter_identity,
    toolchain_value,
    toolset,
)
from buildprint.store.memo import Memo

PYTHON = sys.executable
GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="no gcc on this machine")


def test_the_caller_environment_does_not_reach_the_toolchain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = toolchain_value(PYTHON, {})
    wrapper = tmp_path / "gcc"
    wrapper.write_text('#!/bin/sh\nexec /usr/bin/gcc -DWRAPPED "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CC", str(wrapper))
    # Only declared variables count: the caller's CC and PATH are not the build's.
    assert toolchain_value(PYTHON, {}) == before
    assert str(tmp_path) not in toolset(PYTHON, {}).path


@needs_gcc
def test_spelling_of_the_same_compiler_does_not_matter(tmp_path: Path) -> None:
    assert GCC is not None
    configured = interpreter_identity(PYTHON)["config"]["CC"].split()[0]
    link = tmp_path / "my-cc"
    link.symlink_to(os.path.realpath(GCC))
    search = os.pathsep.join([str(tmp_path), *DEFAULT_SEARCH_PATH])
    default = toolchain_value(PYTHON, {})["compilers"]
    assert isinstance(default, dict) and default["cc"] is not None
    for spelling in ("gcc", os.path.realpath(GCC), configured):
        assert toolchain_value(PYTHON, {"CC": spelling})["compilers"] == default, spelling
    linked = toolchain_value(PYTHON, {"CC": "my-cc", "PATH": search})["compilers"]
    assert isinstance(linked, dict) and linked["cc"] == default["cc"]


@needs_gcc
def test_another_compiler_binary_changes_the_toolchain(tmp_path: Path) -> None:
    wrapper = tmp_path / "gcc"
    wrapper.write_text('#!/bin/sh\nexec /usr/bin/gcc -DWRAPPED "$@"\n')
    wrapper.chmod(0o755)
    default = toolchain_value(PYTHON, {})["compilers"]
    wrapped = toolchain_value(PYTHON, {"CC": str(wrapper)})["compilers"]
    assert isinstance(default, dict) and isinstance(wrapped, dict)
    assert wrapped["cc"] != default["cc"]
    assert wrapped["cxx"] == default["cxx"]  # only the role that changed


def test_the_build_path_is_the_folders_of_the_tools_found(tmp_path: Path) -> None:
    tools = toolset(PYTHON, {})
    found = [hit[0] for hit in tools.found.values() if hit is not None]
    assert tools.path == [
        e for e in DEFAULT_SEARCH_PATH if e in {os.path.dirname(f) for f in found}
    ]
    assert set(tools.files) >= set(found)
    # A declared PATH is the search path itself, relative entries dropped.
    declared = toolset(PYTHON, {"PATH": f"relative/bin{os.pathsep}{tmp_path}{os.pathsep}/usr/bin"})
    assert declared.path == [str(tmp_path), "/usr/bin"]


def test_interpreters_of_one_version_and_abi_built_differently_differ() -> None:
    system = Path("/usr/bin/python3")
    if not system.exists() or os.path.realpath(system) == os.path.realpath(PYTHON):
        pytest.skip("needs a second interpreter of the running one's version")
    ours, theirs = interpreter_identity(PYTHON), interpreter_identity(str(system))
    if (ours["python"], ours["abi"]) != (theirs["python"], theirs["abi"]):
        pytest.skip("/usr/bin/python3 is another Python version here")
    a, b = toolchain_value(PYTHON, {}), toolchain_value(str(system), {})
    assert (a["python"], a["abi"]) == (b["python"], b["abi"])
    assert a["interpreter"] != b["interpreter"]  # binary and build configuration


def test_binary_probes_are_memoized_by_stat(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_bytes(b"#!/bin/sh\necho one\n")
    tool.chmod(0o755)
    memo = Memo(tmp_path / "memo.json")
    search = {"PATH": str(tmp_path), "CC": str(tool)}
    first = toolchain_value(PYTHON, search, memo)["compilers"]
    assert isinstance(first, dict)
    cached = memo.get(f"compiler:{tool}")
    assert cached["value"] == first["cc"]
    tool.write_bytes(b"#!/bin/sh\necho two!\n")  # new content, new stat
    second = toolchain_value(PYTHON, search, memo)["compilers"]
    assert isinstance(second, dict) and second["cc"] != first["cc"]
