"""Typed errors. Each carries the file (and line) it is about; the CLI maps them to exit codes."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ArchiveError",
    "BuildFailed",
    "BuildprintError",
    "InputError",
    "PolicyError",
    "StoreError",
]


class BuildprintError(Exception):
    """Base class. ``exit_code`` is what the CLI exits with (2: bad input or usage)."""

    exit_code = 2

    def __init__(
        self, message: str, *, file: str | Path | None = None, line: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file if self.line is None else f"{self.file}:{self.line}"
            where += ": "
        return f"{where}{self.message}"


class InputError(BuildprintError):
    """Bad input: malformed settings, missing files, hash mismatches, a plugin that raises."""


class PolicyError(InputError):
    """A signature policy names an unknown component or mode, or its hook fails."""


class ArchiveError(InputError):
    """An archive is unreadable or unsafe (``..``, absolute paths, escaping links, devices)."""


class StoreError(BuildprintError):
    """The store is unusable (corrupt index, unreadable blob)."""


class BuildFailed(BuildprintError):
    """A package's build failed; other packages may still succeed."""

    exit_code = 1


class CorruptBlob(StoreError):
    """A stored blob whose bytes do not hash to its name (flipped, truncated or missing);
    it has been moved to the store's ``quarantine/`` folder."""

    def __init__(self, digest: str, problem: str, *, file: str | Path | None = None) -> None:
        super().__init__(f"blob {digest}: {problem}", file=file)
        self.digest = digest
        self.problem = problem
