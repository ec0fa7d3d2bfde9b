"""The compiler builds get, as the toolchain component and the plan snapshot see it."""

from __future__ import annotations

import pytest

from buildprint.inputs.toolchain import compiler_command


def test_compiler_command_follows_cc_like_a_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CC", raising=False)
    assert compiler_command() == ["cc"]
    monkeypatch.setenv("CC", "")  # set but empty: the default, not an empty command
    assert compiler_command() == ["cc"]
    monkeypatch.setenv("CC", "ccache 'gcc 12' -m64")
    assert compiler_command() == ["ccache", "gcc 12", "-m64"]
    assert compiler_command("clang") == ["clang"]
