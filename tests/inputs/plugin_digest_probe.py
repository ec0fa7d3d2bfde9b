"""Print plugin_digest(ROOT, MODULE) as canonical JSON (run under other interpreters)."""

from __future__ import annotations

import sys
from pathlib import Path

from buildprint.inputs.plugin import plugin_digest
from buildprint.signature.canonical import canonical_bytes

__all__: list[str] = []

if __name__ == "__main__":
    root, module = sys.argv[1], sys.argv[2]
    sys.stdout.write(canonical_bytes(plugin_digest(Path(root), module)).decode("utf-8"))
