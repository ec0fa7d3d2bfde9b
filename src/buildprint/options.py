"""Run options: what comes from the command line (or a library caller), not the project files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Options"]


@dataclass(frozen=True)
class Options:
    """Run options that come from the command line rather than the project files."""

    requirements: Sequence[str] = ()
    requirement_files: Sequence[Path] = ()
    force: Sequence[str] = ()
    reuse_by_version: Sequence[str] = ()
    store: Path | None = None
    #: Where built wheels are placed, over ``[project] wheelhouse`` (a cluster worker's own).
    wheelhouse: Path | None = None
    index_url: str | None = None
    find_links: Sequence[str] = ()
    #: More indexes, searched with the main one (after the project's `extra-index-url`).
    extra_index_urls: Sequence[str] = ()
    #: Constraints files (``-c``): they narrow the versions of required packages.
    constraint_files: Sequence[Path] = ()
    remotes: Sequence[str] = ()  # extra remote caches (read and write), tried after settings'
    with_deps: bool = False  # also build the install dependencies, resolved and locked
    from_source: bool = False  # the whole closure from sdists, build requirements included
    #: Where builds run (``dask://HOST:PORT``), over ``[executor] url``; None: the settings'.
    executor: str | None = None
