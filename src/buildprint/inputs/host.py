"""The ``host`` component: facts about the build environment (container image, CUDA, …)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from buildprint.errors import InputError
from buildprint.signature.canonical import CanonicalValue, digest_bytes

__all__ = ["HOST_VARIABLE", "host_value"]

#: The zero-code way: its value is folded into every package's ``host`` component.
HOST_VARIABLE = "BUILDPRINT_HOST_SIGNATURE"


def _hook_value(result: Any, where: str) -> dict[str, CanonicalValue]:
    if isinstance(result, bytes | bytearray):
        return {"sha256": digest_bytes(bytes(result))}
    if isinstance(result, Mapping):
        out: dict[str, CanonicalValue] = {}
        for key, value in result.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise InputError(
                    f"host_signature must return str -> str, got {key!r}: {value!r}", file=where
                )
            out[key] = value
        return out
    raise InputError(
        f"host_signature must return a mapping or bytes, got {type(result).__name__}", file=where
    )


def host_value(
    variable: str | None,
    hook: Callable[[], Any] | None = None,
    hook_file: str = "<host hook>",
) -> dict[str, CanonicalValue]:
    """Component value: the hook's entries (bytes become ``{"sha256": …}``), plus the
    variable's value under its own name, so a change reads as ``host/cuda`` or
    ``host/BUILDPRINT_HOST_SIGNATURE``. ``hook`` is the already-bound call for this package."""
    value: dict[str, CanonicalValue] = {}
    if hook is not None:
        value.update(_hook_value(hook(), hook_file))
    if variable is not None:
        value[HOST_VARIABLE] = variable
    return value
