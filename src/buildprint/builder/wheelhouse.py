"""The wheelhouse: built wheels plus a PEP 503 ``simple/`` index pip and uv can use."""

from __future__ import annotations

import html
import threading
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from buildprint.fsio import copy_atomic, stat_key, write_atomic
from buildprint.store.memo import Memo

__all__ = ["Wheelhouse"]


class Wheelhouse:
    """``root/<wheel files>`` and ``root/simple/<project>/index.html`` (PEP 503).

    The sha256 of each placed wheel is remembered with the file's state, so placing a wheel
    that is already there (every reuse) hashes nothing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._digests = Memo(root / "simple" / ".digests.json")

    def _known_digest(self, path: Path) -> str | None:
        entry = self._digests.get(path.name)
        if isinstance(entry, dict) and entry.get("state") == stat_key(path):
            return str(entry["sha256"])
        return None

    def add(self, source: Path, filename: str, sha256: str) -> Path:
        """Place ``source`` (whose sha256 the caller knows, e.g. from the store) as
        ``filename``, atomically replacing a different older file, and refresh the index."""
        target = self.root / filename
        with self._lock:
            if self._known_digest(target) != sha256:
                copy_atomic(source, target)
                self._digests.put(filename, {"state": stat_key(target), "sha256": sha256})
                self._index(canonicalize_name(parse_wheel_filename(filename)[0]))
                self._digests.save()
        return target

    def _index(self, project: str) -> None:
        links = []
        for wheel in sorted(self.root.glob("*.whl")):
            if canonicalize_name(parse_wheel_filename(wheel.name)[0]) != project:
                continue
            digest = self._known_digest(wheel)
            fragment = f"#sha256={digest}" if digest else ""
            name = html.escape(wheel.name)
            links.append(f'<a href="../../{name}{fragment}">{name}</a><br/>')
        self._page(self.root / "simple" / project / "index.html", links)
        projects = sorted(
            d.name for d in (self.root / "simple").iterdir() if (d / "index.html").exists()
        )
        self._page(
            self.root / "simple" / "index.html",
            [f'<a href="{html.escape(p)}/">{html.escape(p)}</a><br/>' for p in projects],
        )

    @staticmethod
    def _page(path: Path, links: list[str]) -> None:
        body = "\n".join(links)
        write_atomic(path, f"<!DOCTYPE html>\n<html><body>\n{body}\n</body></html>\n".encode())
