"""buildprint hooks for idna: a fixed hash seed for its build, and a signature policy in code."""

from __future__ import annotations

from typing import Any


def update_env(pkg: Any, env: dict[str, str]) -> dict[str, str]:
    # A fixed hash seed keeps set/dict iteration order, and so generated files, stable.
    return {**env, "PYTHONHASHSEED": "0"}


def signature(pkg: Any, sig: Any) -> None:
    # idna builds a py3-none-any wheel: a new interpreter or compiler does not change it.
    if "toolchain" in sig:
        sig.remove("toolchain")
    sig.add("wheel-kind", "pure")
