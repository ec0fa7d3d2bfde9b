"""The wheelhouse: built wheels plus a PEP 503 ``simple/`` index pip and uv can use."""

from __future__ import annotations

import html
import os
import shutil
import tempfile
import threading
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

from buildprint.inputs.files import file_digest

__all__ = ["Wheelhouse"]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


class Wheelhouse:
    """``root/<wheel files>`` and ``root/simple/<project>/index.html`` (PEP 503)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()

    def add(self, wheel: Path) -> Path:
        """Place ``wheel`` (atomically; a same-named older wheel is replaced) and refresh the
        index. Returns the wheel's path in the wheelhouse."""
        target = self.root / wheel.name
        with self._lock:
            self.root.mkdir(parents=True, exist_ok=True)
            if not (
                target.exists()
                and target.stat().st_size == wheel.stat().st_size
                and file_digest(target) == file_digest(wheel)
            ):
                fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
                os.close(fd)
                shutil.copyfile(wheel, tmp)
                os.replace(tmp, target)
            self._index(canonicalize_name(parse_wheel_filename(wheel.name)[0]))
        return target

    def _index(self, project: str) -> None:
        wheels = sorted(
            p
            for p in self.root.glob("*.whl")
            if canonicalize_name(parse_wheel_filename(p.name)[0]) == project
        )
        links = "\n".join(
            f'<a href="../../{html.escape(p.name)}#sha256={file_digest(p)}">'
            f"{html.escape(p.name)}</a><br/>"
            for p in wheels
        )
        _write_atomic(
            self.root / "simple" / project / "index.html",
            f"<!DOCTYPE html>\n<html><body>\n{links}\n</body></html>\n",
        )
        projects = sorted(
            d.name for d in (self.root / "simple").iterdir() if (d / "index.html").exists()
        )
        root_links = "\n".join(
            f'<a href="{html.escape(name)}/">{html.escape(name)}</a><br/>' for name in projects
        )
        _write_atomic(
            self.root / "simple" / "index.html",
            f"<!DOCTYPE html>\n<html><body>\n{root_links}\n</body></html>\n",
        )
