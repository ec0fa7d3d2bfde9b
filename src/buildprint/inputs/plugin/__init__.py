"""The ``plugin`` component: an AST-canonical digest of the hook code that acts on a package.

Only what a hook can reach counts: the hooks themselves, the project-local functions, classes
and module-level values they use (followed across project-local imports), the import-time
statements of the modules involved, and the versions of the third-party distributions they
import. Comments, docstrings and formatting do not count. The rules are written out in
``docs/plugin-digest.md``. The package is stdlib-only so the digest can be checked under any
supported interpreter with nothing but ``PYTHONPATH=src``.

- :mod:`.canonical`: the canonical form of code (a chain of small named AST steps, then a
  version-stable serialization);
- :mod:`.reads`: what a top-level statement reads from its module;
- :mod:`.modules`: finding project-local modules and installed distributions;
- :mod:`.digest`: the walk from the hooks to everything they reach, and the component value.
"""

from __future__ import annotations

from buildprint.inputs.plugin.canonical import (
    CANONICAL_STEPS,
    ForgetStringPrefixes,
    JoinFStringLiterals,
    NormalizeImportLevels,
    RemoveDocstrings,
    canonical_statement,
)
from buildprint.inputs.plugin.digest import (
    HOOK_NAMES,
    IMPORT_TIME,
    function_reference,
    plugin_digest,
)
from buildprint.inputs.plugin.modules import module_file, split_reference

__all__ = [
    "CANONICAL_STEPS",
    "HOOK_NAMES",
    "IMPORT_TIME",
    "ForgetStringPrefixes",
    "JoinFStringLiterals",
    "NormalizeImportLevels",
    "RemoveDocstrings",
    "canonical_statement",
    "function_reference",
    "module_file",
    "plugin_digest",
    "split_reference",
]
