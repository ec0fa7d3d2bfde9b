"""Canonical JSON encoding (RFC 8785 style) and the digests built on it.

Sorted keys, UTF-8, no insignificant whitespace, integers only: the same value gives the
same bytes on any machine and any Python, so a digest of it is a stable identity.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

__all__ = ["CanonicalValue", "canonical_bytes", "digest_bytes", "digest_value", "normalize"]

#: What a component value may be: JSON without floats.
CanonicalValue: TypeAlias = (
    bool | int | str | list["CanonicalValue"] | dict[str, "CanonicalValue"] | None
)


def normalize(value: Any) -> CanonicalValue:
    """Return ``value`` as plain JSON data, refusing what has no canonical form.

    Tuples become lists, mappings become dicts with string keys; floats, bytes and
    other objects are refused because their text form is not stable across platforms.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Mapping):
        out: dict[str, CanonicalValue] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"canonical mappings need string keys, got {key!r}")
            out[key] = normalize(item)
        return out
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [normalize(item) for item in value]
    raise TypeError(f"{type(value).__name__} has no canonical encoding: {value!r}")


def canonical_bytes(value: Any) -> bytes:
    """Encode ``value`` canonically: sorted keys, compact separators, UTF-8, no floats."""
    return json.dumps(
        normalize(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def digest_bytes(data: bytes) -> str:
    """SHA-256 of ``data`` as lowercase hex, the one digest used everywhere."""
    return hashlib.sha256(data).hexdigest()


def digest_value(value: Any) -> str:
    """Digest of the canonical encoding of ``value``."""
    return digest_bytes(canonical_bytes(value))
