"""A project folder: settings, per-package settings, patches, plugins and requirements."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from buildprint.errors import InputError
from buildprint.project.settings import PackageSettings, ProjectSettings, load_settings
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


def read_requirements(path: Path, files: list[Path] | None = None) -> list[Requirement]:
    """Requirements, one per line; ``#`` comments; ``-r other.txt`` includes. Each is a
    :class:`LocatedRequirement` (its file and line). Every file read is appended to ``files``
    when given."""
    if files is not None:
        files.append(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"cannot read requirements: {exc.strerror}", file=path) from None
    found: list[Requirement] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.split(" #", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith(("-r ", "--requirement ")):
            found.extend(read_requirements(path.parent / text.split(None, 1)[1], files))
            continue
        if text.startswith("-"):
            raise InputError(f"unsupported option {text!r}", file=path, line=number)
        found.append(parse_requirement(text, file=path, line=number))
    return found


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

    def requirements(self) -> list[Requirement]:
        file = self.root / self.settings.project.requirements
        if not file.exists():
            return []
        return read_requirements(file)

    def validate(self) -> None:
        """Load every package settings file, so a mistake anywhere is found before building."""
        for key in self._settings_files():
            self.package_settings(key)
