"""A project folder: settings, per-package settings, patches, plugins and requirements."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from buildprint.errors import InputError
from buildprint.project.settings import PackageSettings, ProjectSettings, load_settings
from buildprint.project.toml import line_of
from buildprint.urls import scrub_credentials

__all__ = [
    "PROJECT_FILE",
    "LocatedRequirement",
    "Project",
    "is_pinned",
    "parse_requirement",
    "read_requirements",
]

PROJECT_FILE = "buildprint.toml"


class LocatedRequirement(Requirement):
    """A requirement that remembers where it was written: a requirements file and line, or a
    command-line argument (no file), so an error about it (a refused direct reference) can
    name that."""

    def __init__(
        self, text: str, *, file: str | Path | None = None, line: int | None = None
    ) -> None:
        super().__init__(text)
        self.text = text
        self.file = Path(file) if file is not None else None
        self.line = line


def parse_requirement(
    text: str, *, file: str | Path | None = None, line: int | None = None
) -> Requirement:
    """``text`` as a :class:`LocatedRequirement`: it knows its ``file`` and ``line`` (no file:
    a command-line argument)."""
    try:
        return LocatedRequirement(text, file=file, line=line)
    except InvalidRequirement as exc:
        hint = ""
        if "://" in text and "@" not in text.split("://", 1)[0]:
            hint = " (a direct reference is written 'NAME @ URL')"
        where = "" if file is not None else " (argument)"
        raise InputError(
            f"invalid requirement{where} {scrub_credentials(text)!r}{hint}: "
            f"{scrub_credentials(str(exc))}",
            file=file,
            line=line,
        ) from None


def is_pinned(requirement: Requirement) -> bool:
    """Whether ``requirement`` names exactly one version (``==1.2``, not ``==1.*``)."""
    specs = list(requirement.specifier)
    return len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version


#: pip options a requirements file may hold that buildprint does not honour, and what to do
#: instead. ``-r``/``--requirement`` (include another file) is the one option it reads.
_UNSUPPORTED_OPTIONS: dict[str, str] = {
    "-e": "editable installs are not built; require the package by name and give its "
    'folder as `source = { path = "…" }` in packages/<name>.toml',
    "-c": "constraints files are not read; pin the versions in the requirements",
    "-i": "set `index-url` under [project] in buildprint.toml",
    "--extra-index-url": "buildprint reads one index; set `index-url` / `find-links` under "
    "[project] in buildprint.toml",
    "--no-index": "set `index-url` / `find-links` under [project] in buildprint.toml",
    "-f": "set `find-links` under [project] in buildprint.toml",
    "--hash": "pin the source instead: a direct reference 'NAME @ URL#sha256=…' or "
    "`source = { url = …, sha256 = … }` in packages/<name>.toml",
}
_ALIASES = {
    "--editable": "-e",
    "--constraint": "-c",
    "--index-url": "-i",
    "--find-links": "-f",
}
_INCLUDE = ("-r", "--requirement")
_VERSION = re.compile(r"\d+(\.\d+)*")
_COMMENT = re.compile(r"(^|\s)#.*$")
_OPTION = re.compile(r"(--?[A-Za-z][\w-]*)")
#: A per-requirement option after the requirement (``alpha==1 --hash=sha256:…``).
_TRAILING_OPTION = re.compile(r"\s(--?[A-Za-z][\w-]*)(?=[\s=]|$)")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, logical line): comments removed, ``\\`` continuations joined (numbered
    by their first line), as pip reads a requirements file."""
    pending: list[str] = []
    first = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            first = number
        line = _COMMENT.sub("", raw)
        if line.endswith("\\"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield first, " ".join(part.strip() for part in pending).strip()
        pending = []
    if pending:
        yield first, " ".join(part.strip() for part in pending).strip()


def _option_error(option: str, path: Path, line: int) -> InputError:
    canonical = _ALIASES.get(option, option)
    why = _UNSUPPORTED_OPTIONS.get(canonical)
    spelled = option if canonical == option else f"{option} ({canonical})"
    message = f"unsupported option {spelled} in a requirements file"
    return InputError(
        f"{message}: {why}"
        if why
        else f"{message}; buildprint reads only -r FILE and requirements",
        file=path,
        line=line,
    )


def _include(text: str) -> str | None:
    """The file a ``-r FILE`` / ``--requirement[=]FILE`` / ``-rFILE`` line includes."""
    for option in _INCLUDE:
        if text == option:
            return ""
        if text.startswith(option):
            rest = text[len(option) :]
            if rest[:1] in (" ", "\t", "="):
                return rest[1:].strip()
            if option == "-r":  # -rFILE, as pip's option parser allows
                return rest.strip()
    return None


def read_requirements(
    path: Path, files: list[Path] | None = None, *, _chain: tuple[tuple[Path, int], ...] = ()
) -> list[Requirement]:
    """Requirements, one per line; ``#`` comments; ``\\`` continuations; ``-r other.txt``
    includes (relative to the including file). Each is a :class:`LocatedRequirement` (its
    file and line). Every file read is appended to ``files`` when given.

    An include that leads back to a file being read is refused at its file and line, with
    the chain of includes; so is any other pip option (``-e``, ``--hash``, ``-i`` …), named.
    """
    if files is not None:
        files.append(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError("cannot read requirements: not UTF-8 text", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read requirements: {exc.strerror}", file=path) from None
    found: list[Requirement] = []
    for number, text_line in _lines(text):
        if not text_line:
            continue
        included = _include(text_line)
        if included is not None:
            if not included:
                raise InputError("-r needs a file name", file=path, line=number)
            found.extend(_read_included(path, number, included, files, _chain))
            continue
        if text_line.startswith("-"):
            option = _OPTION.match(text_line)
            raise _option_error(option.group(1) if option else text_line, path, number)
        trailing = _TRAILING_OPTION.search(text_line)
        if trailing is not None:
            raise _option_error(trailing.group(1), path, number)
        found.append(parse_requirement(text_line, file=path, line=number))
    return found


def _read_included(
    path: Path,
    number: int,
    included: str,
    files: list[Path] | None,
    chain: tuple[tuple[Path, int], ...],
) -> list[Requirement]:
    target = path.parent / included
    here = (*chain, (path, number))
    reading = [p.resolve() for p, _ in here]
    if target.resolve() in reading:
        start = reading.index(target.resolve())
        base = here[0][0].parent
        steps = [f"{_shown(p, base)}:{line}" for p, line in here[start:]]
        cycle = " -> ".join([*steps, _shown(target, base)])
        raise InputError(
            f"-r {included} includes a file already being read, a cycle: {cycle}",
            file=path,
            line=number,
        )
    if not target.is_file():
        raise InputError(f"-r {included}: no such file ({target})", file=path, line=number)
    return read_requirements(target, files, _chain=here)


def _shown(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when it is below it (messages stay short)."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Project:
    """A loaded project. Paths in settings are relative to ``root``."""

    root: Path
    settings: ProjectSettings
    _package_settings: dict[str, PackageSettings] = field(
        default_factory=dict, compare=False, repr=False
    )
    _listing: dict[str, dict[str, Path]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def load(cls, root: Path) -> Project:
        root = root.resolve()
        if not root.is_dir():
            raise InputError("project folder does not exist", file=root)
        file = root / PROJECT_FILE
        settings = (
            load_settings(file, ProjectSettings)
            if file.exists()
            else ProjectSettings.model_validate({})
        )
        return cls(root, settings)

    @property
    def store_dir(self) -> Path:
        return self.root / self.settings.project.store

    @property
    def wheelhouse_dir(self) -> Path:
        return self.root / self.settings.project.wheelhouse

    @property
    def patches_dir(self) -> Path:
        return self.root / "patches"

    @property
    def lock_file(self) -> Path:
        return self.root / "buildprint.lock"

    def settings_file(self, name: str) -> Path:
        key = canonicalize_name(name)
        return self._settings_files().get(key, self.root / "packages" / f"{key}.toml")

    def package_settings(self, name: str) -> PackageSettings:
        """Settings of ``name`` (``packages/<name>.toml``; any spelling of the name)."""
        key = canonicalize_name(name)
        if key not in self._package_settings:
            self._package_settings[key] = self._load_package_settings(key)
        return self._package_settings[key]

    def _load_package_settings(self, key: str) -> PackageSettings:
        file = self._settings_files().get(key)
        if file is not None:
            return load_settings(file, PackageSettings)
        return PackageSettings.model_validate({})

    def _settings_files(self) -> dict[str, Path]:
        """``packages/*.toml`` by normalized name, listed once."""
        if "" not in self._listing:
            folder = self.root / "packages"
            files = sorted(folder.glob("*.toml")) if folder.is_dir() else []
            self._listing[""] = {canonicalize_name(f.stem): f for f in files}
        return self._listing[""]

    def unmatched_settings(self, names: Iterable[str]) -> list[str]:
        """Warnings for the ``packages/<name>.toml`` files no package of ``names`` (what the
        run builds) reads: a misspelt name, or a package no longer required."""
        wanted = {canonicalize_name(n) for n in names}
        return [
            f"{file.relative_to(self.root).as_posix()}: no requirement names {key!r}; "
            "these settings are not used (is the file name spelt as the package?)"
            for key, file in sorted(self._settings_files().items())
            if key not in wanted
        ]

    def describe_source(self, name: str) -> str:
        """Where package ``name``'s settings and source are, for messages:
        ``packages/alpha.toml, source dist/alpha-1.0.tar.gz``."""
        key = canonicalize_name(name)
        file = self._settings_files().get(key)
        if file is None:
            return "from the index, no packages/ settings"
        source = self.package_settings(key).source
        where = source.path or source.url if source is not None else None
        shown = file.relative_to(self.root).as_posix()
        return f"{shown}, source {scrub_credentials(where)}" if where else shown

    @property
    def settings_path(self) -> Path:
        return self.root / PROJECT_FILE

    def setting_error(self, key: Sequence[str], message: str) -> InputError:
        """An error about setting ``key`` (a path of keys, ``("project", "python")``) of
        ``buildprint.toml``, at its line."""
        file = self.settings_path
        try:
            line = line_of(file.read_text(encoding="utf-8"), list(key))
        except (OSError, UnicodeDecodeError):
            line = None
        return InputError(message, file=file, line=line)

    def interpreter(self) -> str | None:
        """The ``python`` setting as the path of an executable (None: not set). A path is
        relative to the project; a bare name is looked up on ``PATH`` (``python3.12``); a
        bare version (``3.12``) is taken as ``python3.12`` on ``PATH``. What cannot be
        found is an :class:`InputError` at the setting's line."""
        value = self.settings.project.python
        if value is None:
            return None
        shown = f"python = {value!r}"
        if not value.strip():
            raise self.setting_error(("project", "python"), f"{shown}: give a path or a command")
        if "/" in value or value.startswith("~"):
            path = self.root / Path(value).expanduser()
            if not path.exists():
                raise self.setting_error(("project", "python"), f"{shown}: no such file ({path})")
            if not path.is_file() or not os.access(path, os.X_OK):
                raise self.setting_error(
                    ("project", "python"), f"{shown}: {path} is not an executable file"
                )
            return str(path)
        if _VERSION.fullmatch(value):
            found = shutil.which(f"python{value}")
            if found is None:
                raise self.setting_error(
                    ("project", "python"),
                    f"{shown} is a version, not an interpreter, and python{value} is not on "
                    "PATH; give the interpreter's path or a command name on PATH",
                )
            return found
        found = shutil.which(value)
        if found is None:
            raise self.setting_error(
                ("project", "python"),
                f"{shown}: no such command on PATH; give the interpreter's path or a command "
                "name on PATH",
            )
        return found

    def requirements(self) -> list[Requirement]:
        file = self.root / self.settings.project.requirements
        if not file.exists():
            return []
        return read_requirements(file)

    def validate(self) -> None:
        """Load every package settings file, so a mistake anywhere is found before building."""
        for key in self._settings_files():
            self.package_settings(key)
