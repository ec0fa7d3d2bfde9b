"""A small persistent memo (JSON in the store) so unchanged inputs are not re-read."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from buildprint.fsio import write_atomic

__all__ = ["Memo"]


class Memo:
    """Key -> JSON value, loaded once, saved atomically when changed. A missing or corrupt
    file is an empty memo: a memo only ever saves work, it never decides anything."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._dirty = False
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self._data: dict[str, Any] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self._data = {}

    def get(self, key: str) -> Any:
        with self._lock:
            return self._data.get(key)

    def put(self, key: str, value: Any) -> None:
        with self._lock:
            if self._data.get(key) != value:
                self._data[key] = value
                self._dirty = True

    def drop(self, key: str) -> None:
        with self._lock:
            if self._data.pop(key, None) is not None:
                self._dirty = True

    def names(self) -> list[str]:
        with self._lock:
            return list(self._data)

    def save(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            write_atomic(self.path, json.dumps(self._data, sort_keys=True).encode("utf-8"))
            self._dirty = False
