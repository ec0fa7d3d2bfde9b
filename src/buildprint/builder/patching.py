"""Apply a package's patches to an unpacked source tree with GNU patch, or explain which hunk fails.

Each patch is checked with ``--dry-run`` before it touches the tree, so a patch that does not
apply leaves the tree exactly as the previous patches made it: nothing half-applied, no ``.rej``
or ``.orig`` files. Patches must apply without fuzz (``--fuzz=0``, as Debian's source formats
require): a fuzzy match can put a change in the wrong place, silently. Offsets are accepted.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from buildprint.builder.guard import run_guarded
from buildprint.errors import InputError

__all__ = ["PatchSection", "apply_patches", "parse_sections"]

_OPTIONS = (
    "-p1",
    "--batch",
    "--forward",
    "--fuzz=0",
    "--no-backup-if-mismatch",
    "--reject-file=-",
    "--quoting-style=literal",
)

_HUNK_HEADER = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_CHECKING = re.compile(r"^(?:checking|patching) file (.+)$")
_HUNK_FAILED = re.compile(r"^Hunk #(\d+) FAILED at (\d+)")
_HUNKS_FAILED = re.compile(r"^(\d+) out of (\d+) hunks? FAILED")
_MISSING = re.compile(r"^can't find file to patch at input line (\d+)")
_MALFORMED = re.compile(r"malformed patch at line (\d+): ?(.*)$")
_DANGEROUS = re.compile(r"^Ignoring potentially dangerous file name (.+)$")


@dataclass
class PatchSection:
    """One file's part of a unified diff: its names (after ``-p1``) and where its hunks start."""

    header_line: int
    names: tuple[str, ...]
    hunk_lines: list[int] = field(default_factory=list)


def _strip_name(raw: str) -> str | None:
    name = raw.split("\t", 1)[0].strip()
    if name.startswith('"') and name.endswith('"'):
        name = name[1:-1]
    if name == "/dev/null":
        return None
    return name.split("/", 1)[1] if "/" in name else name


def parse_sections(text: str) -> list[PatchSection]:
    """The file sections of a unified diff, with 1-based line numbers in the patch file.

    Hunk bodies are skipped by their counts, so a removed line that starts with ``-- `` is not
    mistaken for a new file header.
    """
    sections: list[PatchSection] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if (
            line.startswith("--- ")
            and index + 1 < len(lines)
            and lines[index + 1].startswith("+++ ")
        ):
            candidates = (_strip_name(line[4:]), _strip_name(lines[index + 1][4:]))
            names = tuple(dict.fromkeys(n for n in candidates if n is not None))
            sections.append(PatchSection(header_line=index + 1, names=names))
            index += 2
            continue
        header = _HUNK_HEADER.match(line)
        if header and sections:
            sections[-1].hunk_lines.append(index + 1)
            old = int(header.group(1)) if header.group(1) is not None else 1
            new = int(header.group(2)) if header.group(2) is not None else 1
            index += 1
            while index < len(lines) and (old > 0 or new > 0):
                body = lines[index]
                marker = body[:1]
                if marker in (" ", ""):
                    old, new = old - 1, new - 1
                elif marker == "-":
                    old -= 1
                elif marker == "+":
                    new -= 1
                elif marker != "\\":
                    break
                index += 1
            continue
        index += 1
    return sections


def _patch_env() -> dict[str, str]:
    # English messages for parsing; none of the caller's PATCH_*/POSIXLY_CORRECT settings.
    return {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}


def _run(patch_bin: str, source_dir: Path, patch: Path, dry_run: bool) -> tuple[int, str]:
    args = [patch_bin, *_OPTIONS, "-d", str(source_dir), "-i", str(patch)]
    if dry_run:
        args.append("--dry-run")
    # Guarded like every process a build starts: it dies with buildprint, even on SIGKILL.
    proc = run_guarded(args, env=_patch_env())
    return proc.returncode, proc.stdout.decode("utf-8", "replace")


def _explain(patch: Path, output: str) -> InputError:
    """Turn GNU patch's dry-run report into an error naming the patch file and line."""
    try:
        sections = parse_sections(patch.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        sections = []
    cursor = -1
    current: PatchSection | None = None
    current_name = "?"

    def advance(name: str | None) -> None:
        nonlocal cursor, current, current_name
        # patch reports files in the order of the diff; match by name, else take the next.
        for position in range(cursor + 1, len(sections)):
            if name is None or name in sections[position].names:
                cursor, current = position, sections[position]
                break
        else:
            if cursor + 1 < len(sections):
                cursor += 1
                current = sections[cursor]
        if name is not None:
            current_name = name
        elif current is not None and current.names:
            current_name = current.names[-1]

    lines = output.splitlines()
    for number, line in enumerate(lines):
        if match := _CHECKING.match(line):
            advance(match.group(1).strip())
        elif match := _HUNK_FAILED.match(line):
            hunk, target_line = int(match.group(1)), int(match.group(2))
            count = ""
            for later in lines[number + 1 :]:
                if totals := _HUNKS_FAILED.match(later):
                    if totals.group(1) != "1":
                        count = f" ({totals.group(1)} of {totals.group(2)} hunks fail)"
                    break
            hunk_line = None
            if current is not None and 0 < hunk <= len(current.hunk_lines):
                hunk_line = current.hunk_lines[hunk - 1]
            return InputError(
                f"hunk #{hunk} at line {target_line} of {current_name} does not apply{count}",
                file=patch,
                line=hunk_line,
            )
        elif line.startswith("Reversed (or previously applied) patch detected"):
            return InputError(
                f"patch to {current_name} is already applied (or reversed)",
                file=patch,
                line=current.header_line if current else None,
            )
        elif match := _DANGEROUS.match(line):
            advance(None)
            return InputError(
                f"refuses file name {match.group(1).strip()}: it leaves the source tree",
                file=patch,
                line=current.header_line if current else None,
            )
        elif match := _MISSING.match(line):
            advance(None)
            return InputError(
                f"file to patch {current_name} does not exist in the source tree",
                file=patch,
                line=int(match.group(1)),
            )
        elif match := _MALFORMED.search(line):
            return InputError(
                f"malformed patch: {match.group(2).strip()!r}", file=patch, line=int(match.group(1))
            )
        elif "Only garbage was found in the patch input" in line:
            return InputError("contains no diff that patch understands", file=patch)
    detail = output.strip() or "no output"
    return InputError(f"does not apply: {detail}", file=patch)


def apply_patches(source_dir: Path, patches: Sequence[Path]) -> None:
    """Apply ``patches`` to ``source_dir`` in the given order (``patch -p1``).

    A patch that does not apply raises :class:`InputError` with ``file`` the patch and ``line``
    its failing hunk's ``@@`` header; the tree is then exactly as the earlier patches left it.
    """
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise InputError("source directory does not exist", file=source_dir)
    patch_bin = shutil.which("patch")
    if patch_bin is None:
        raise InputError("GNU patch is not installed (apt-get install patch)", file=source_dir)
    for patch in patches:
        patch = Path(patch).absolute()
        if not patch.is_file():
            raise InputError("patch file does not exist", file=patch)
        code, output = _run(patch_bin, source_dir, patch, dry_run=True)
        if code != 0:
            raise _explain(patch, output)
        code, output = _run(patch_bin, source_dir, patch, dry_run=False)
        if code != 0:
            # The dry run passed, so only a changing tree or disk trouble gets here.
            raise InputError(f"failed after a clean dry run: {output.strip()}", file=patch)
