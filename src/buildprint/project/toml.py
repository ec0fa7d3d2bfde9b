"""Reading TOML with errors that name the file and line."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from buildprint.errors import InputError

__all__ = ["line_of", "read_toml"]

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_PART = r"""(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')"""
_KEY = re.compile(rf"^\s*({_PART}(?:\s*\.\s*{_PART})*)\s*=")


def _split_key(dotted: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", dotted)
    return [p.strip("\"'") for p in parts]


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """Parse ``path``; a syntax error becomes an :class:`InputError` with its line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=path) from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", file=path) from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        message = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", str(exc))
        line = int(match.group(1)) if match else max(1, len(text.splitlines()))
        raise InputError(f"invalid TOML: {message}", file=path, line=line) from None


def line_of(text: str, location: Sequence[str | int]) -> int | None:
    """Line of the key at ``location`` (a path of keys and array indexes, as pydantic reports
    it: ``("packages", "alpha", "wheels", 1)`` is the second ``[[packages.alpha.wheels]]``),
    or of the deepest enclosing key or table that can be found. An index into an inline
    array points at the array's key."""
    wanted = list(location)
    best: tuple[int, int] | None = None  # (matched depth, line)
    table: list[str | int] = []
    seen: dict[tuple[str | int, ...], int] = {}  # array-of-tables header -> occurrences
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        path: list[str | int]
        if header and not _KEY.match(line):
            table = list(_split_key(header.group(1)))
            if line.lstrip().startswith("[["):
                key = tuple(table)
                seen[key] = seen.get(key, -1) + 1
                table.append(seen[key])
            path = table
        else:
            found = _KEY.match(line)
            if not found:
                continue
            path = table + list(_split_key(found.group(1)))
        depth = 0
        for a, b in zip(path, wanted, strict=False):
            if a != b:
                break
            depth += 1
        # An array-of-tables entry other than the one wanted does not enclose it.
        if depth == len(path) and depth > 0 and (best is None or depth > best[0]):
            best = (depth, number)
    return best[1] if best else None
