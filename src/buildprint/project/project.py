"""A project folder: settings, per-package settings, patches, plugins and requirements."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import Specifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from buildprint.errors import InputError
from buildprint.project.settings import PackageSettings, ProjectSettings, load_settings
from buildprint.project.toml import line_of
from buildprint.urls import scrub_credentials

__all__ = [
    "PROJECT_FILE",
    "LocatedRequirement",
    "MarkerEnvironment",
    "Project",
    "apply_constraints",
    "combine_requirements",
    "constraints_allow",
    "is_pinned",
    "parse_requirement",
    "read_constraints",
    "read_requirements",
    "where",
]

PROJECT_FILE = "buildprint.toml"

#: The values environment markers are evaluated with (PEP 508 names), or a function that
#: gives them when a marker first needs them (asking another interpreter costs a process).
MarkerEnvironment = Mapping[str, str] | Callable[[], Mapping[str, str]]


class LocatedRequirement(Requirement):
    """A requirement that remembers where it was written: a requirements file and line, or a
    command-line argument (no file), so an error about it (a refused direct reference) can
    name that.

    ``hashes``: the sha256 digests (lowercase hex) of its ``--hash`` options, one of which
    the source archive must have (empty: no such check). ``constraint``: it was read from a
    constraints file (``-c``). When the same package is required on several lines, or
    constrained, :func:`combine_requirements` makes one requirement of them: ``merged`` then
    holds every requirement line it came from (itself first), ``constraints`` the constraint
    lines that narrowed it, and ``hash_origin`` the line whose ``--hash`` values it keeps."""

    def __init__(
        self,
        text: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        hashes: Iterable[str] = (),
        constraint: bool = False,
        via: str | None = None,
    ) -> None:
        super().__init__(text)
        self.text = text
        self.file = Path(file) if file is not None else None
        self.line = line
        self.hashes = frozenset(hashes)
        self.constraint = constraint
        #: How a requirement with no file came to be, when not from the command line
        #: (``an install dependency``).
        self.via = via
        self.merged: tuple[LocatedRequirement, ...] = (self,)
        self.constraints: tuple[LocatedRequirement, ...] = ()
        self.hash_origin: LocatedRequirement | None = self if self.hashes else None

    def also(self) -> str:
        """`` (with six==1.16.0 at more.txt:3; constraint six<2 at c.txt:1)``: the other lines
        this requirement was made of, for messages (empty when it is one line's)."""
        parts = [f"{_shown_req(r)} at {where(r)}" for r in self.merged[1:]]
        parts += [f"constraint {_shown_req(c)} at {where(c)}" for c in self.constraints]
        return f" (with {'; '.join(parts)})" if parts else ""


def where(requirement: Requirement) -> str:
    """Where ``requirement`` was written: ``requirements.txt:3``, ``the command line``, or how
    it came to be (``an install dependency``)."""
    if isinstance(requirement, LocatedRequirement):
        if requirement.file is None:
            return requirement.via or "the command line"
        line = f":{requirement.line}" if requirement.line is not None else ""
        return f"{requirement.file}{line}"
    return "the requirements"


def _shown_req(requirement: Requirement) -> str:
    """The requirement as a message shows it (a URL without its credentials)."""
    return scrub_credentials(str(requirement))


def parse_requirement(
    text: str,
    *,
    file: str | Path | None = None,
    line: int | None = None,
    hashes: Iterable[str] = (),
    constraint: bool = False,
) -> LocatedRequirement:
    """``text`` as a :class:`LocatedRequirement`: it knows its ``file`` and ``line`` (no file:
    a command-line argument)."""
    try:
        return LocatedRequirement(text, file=file, line=line, hashes=hashes, constraint=constraint)
    except InvalidRequirement as exc:
        hint = ""
        if "://" in text and "@" not in text.split("://", 1)[0]:
            hint = " (a direct reference is written 'NAME @ URL')"
        where = "" if file is not None else " (argument)"
        kind = "constraint" if constraint else "requirement"
        raise InputError(
            f"invalid {kind}{where} {scrub_credentials(text)!r}{hint}: "
            f"{scrub_credentials(str(exc))}",
            file=file,
            line=line,
        ) from None


def is_pinned(requirement: Requirement) -> bool:
    """Whether ``requirement`` names exactly one version (``==1.2``, not ``==1.*``)."""
    specs = list(requirement.specifier)
    return len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version


# -- reading requirements files ------------------------------------------------------------

#: pip options a requirements file may hold that buildprint does not honour, and what to do
#: instead. ``-r``/``--requirement`` (include another file), ``-c``/``--constraint`` (read a
#: constraints file) and a requirement's ``--hash`` are the options it reads.
_UNSUPPORTED_OPTIONS: dict[str, str] = {
    "-e": "editable installs are not built; require the package by name and give its "
    'folder as `source = { path = "…" }` in packages/<name>.toml',
    "-i": "set `index-url` under [project] in buildprint.toml",
    "--extra-index-url": "set `extra-index-url` under [project] in buildprint.toml (or give "
    "--extra-index-url on the command line)",
    "--no-index": "set `index-url` / `find-links` under [project] in buildprint.toml",
    "-f": "set `find-links` under [project] in buildprint.toml",
    "--hash": "a hash belongs to a requirement: write it on the requirement's line "
    "(NAME==VERSION --hash=sha256:…)",
}
_ALIASES = {
    "--editable": "-e",
    "--index-url": "-i",
    "--find-links": "-f",
}
#: The options that read another file, by kind: ``-r`` requirements, ``-c`` constraints.
_NESTED = {"-r": "-r", "--requirement": "-r", "-c": "-c", "--constraint": "-c"}
_HEX64 = re.compile(r"[0-9a-f]{64}")
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
        else f"{message}; buildprint reads requirements, -r FILE, -c FILE and a "
        "requirement's --hash",
        file=path,
        line=line,
    )


def _nested(text: str) -> tuple[str, str] | None:
    """(``-r`` or ``-c``, the file) of a line that reads another file: ``-r FILE``,
    ``--requirement[=]FILE``, ``-rFILE``, and the same for ``-c`` / ``--constraint``."""
    for option, kind in _NESTED.items():
        if text == option:
            return kind, ""
        if text.startswith(option):
            rest = text[len(option) :]
            if rest[:1] in (" ", "\t", "="):
                return kind, rest[1:].strip()
            if len(option) == 2:  # -rFILE, -cFILE, as pip's option parser allows
                return kind, rest.strip()
    return None


def _hashes(text: str, path: Path, line: int) -> tuple[str, frozenset[str]]:
    """The requirement of a line and the sha256 digests of its ``--hash`` options
    (``--hash=sha256:HEX`` or ``--hash sha256:HEX``, any number of them, as pip-compile
    writes them); any other option after a requirement is refused, named."""
    trailing = _TRAILING_OPTION.search(text)
    if trailing is None:
        return text, frozenset()
    requirement = text[: trailing.start()].strip()
    try:
        tokens = shlex.split(text[trailing.start() :])
    except ValueError as exc:
        raise InputError(
            f"cannot read the options of this line: {exc}", file=path, line=line
        ) from None
    found: set[str] = set()
    at = 0
    while at < len(tokens):
        token = tokens[at]
        if token == "--hash":
            value = tokens[at + 1] if at + 1 < len(tokens) else ""
            at += 2
        elif token.startswith("--hash="):
            value = token.removeprefix("--hash=")
            at += 1
        elif token.startswith("-"):
            option = _OPTION.match(token)
            raise _option_error(option.group(1) if option else token, path, line)
        else:
            raise InputError(
                f"unexpected {token!r} among the options of a requirement", file=path, line=line
            )
        algorithm, sep, digest = value.partition(":")
        if not sep or not algorithm or not digest:
            raise InputError(f"--hash {value!r}: want --hash=sha256:HEX", file=path, line=line)
        if algorithm.lower() != "sha256":
            raise InputError(
                f"--hash={algorithm}:…: buildprint checks sha256 digests only (pip-compile "
                "--generate-hashes writes sha256); give the archive's sha256",
                file=path,
                line=line,
            )
        if not _HEX64.fullmatch(digest.lower()):
            raise InputError(
                f"--hash=sha256:{digest}: a sha256 digest is 64 hex digits", file=path, line=line
            )
        found.add(digest.lower())
    return requirement, frozenset(found)


def _check_constraint(constraint: LocatedRequirement) -> None:
    """Refuse, as pip does, what a constraint cannot be: a constraint only narrows the
    versions of a package something else requires."""
    if constraint.extras:
        raise InputError(
            f"constraint {_shown_req(constraint)}: constraints cannot have extras (pip refuses "
            "them too); ask for the extras in a requirements file",
            file=constraint.file,
            line=constraint.line,
        )
    if constraint.url is not None:
        raise InputError(
            f"constraint {_shown_req(constraint)}: a constraint cannot be a URL; give the "
            "source as a direct reference in a requirements file (NAME @ URL)",
            file=constraint.file,
            line=constraint.line,
        )


def read_requirements(
    path: Path,
    files: list[Path] | None = None,
    constraints: list[Requirement] | None = None,
    *,
    _chain: tuple[tuple[Path, int], ...] = (),
    _constraint: bool = False,
) -> list[Requirement]:
    """Requirements, one per line; ``#`` comments; ``\\`` continuations; ``-r other.txt``
    includes (relative to the including file); ``-c other.txt`` constraints files, whose
    lines are appended to ``constraints`` (read, checked and dropped when it is None); a
    requirement's ``--hash=sha256:…`` options. Each is a :class:`LocatedRequirement` (its
    file and line, its hashes). Every file read is appended to ``files`` when given.

    The requirements are returned as written: :func:`combine_requirements` drops those whose
    marker is false, merges a package required twice and applies the constraints.

    An include that leads back to a file being read is refused at its file and line, with
    the chain of includes; so is any other pip option (``-e``, ``-i`` …), named.
    """
    found: list[Requirement] = []
    kept: list[Requirement] = [] if constraints is None else constraints
    _read(path, files, found, kept, _chain, as_constraints=_constraint)
    return kept if _constraint else found


def read_constraints(
    path: Path, files: list[Path] | None = None, constraints: list[Requirement] | None = None
) -> list[Requirement]:
    """The constraints of constraints file ``path`` (``-c FILE`` on the command line), with
    those of the files it reads by ``-c``; appended to ``constraints`` too when given."""
    kept: list[Requirement] = [] if constraints is None else constraints
    start = len(kept)
    _read(path, files, kept, kept, (), as_constraints=True)
    return kept[start:]


def _read(
    path: Path,
    files: list[Path] | None,
    found: list[Requirement],
    constraints: list[Requirement],
    chain: tuple[tuple[Path, int], ...],
    *,
    as_constraints: bool,
) -> None:
    """Read ``path`` into ``found`` (its lines: constraints when ``as_constraints``) and
    ``constraints`` (what its ``-c`` files hold)."""
    if files is not None:
        files.append(path)
    kind = "constraints" if as_constraints else "requirements"
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"cannot read {kind}: not UTF-8 text", file=path) from None
    except OSError as exc:
        raise InputError(f"cannot read {kind}: {exc.strerror}", file=path) from None
    for number, text_line in _lines(text):
        if not text_line:
            continue
        nested = _nested(text_line)
        if nested is not None:
            option, included = nested
            if not included:
                raise InputError(f"{option} needs a file name", file=path, line=number)
            if as_constraints and option == "-r":
                raise InputError(
                    f"-r {included} in a constraints file: pip would read that file's lines "
                    "as requirements, adding packages; include constraints with -c, and "
                    "requirements from a requirements file",
                    file=path,
                    line=number,
                )
            target = _included(path, number, option, included, chain)
            here = (*chain, (path, number))
            if option == "-c":
                _read(target, files, constraints, constraints, here, as_constraints=True)
            else:
                _read(target, files, found, constraints, here, as_constraints=False)
            continue
        if text_line.startswith("-"):
            option_match = _OPTION.match(text_line)
            raise _option_error(option_match.group(1) if option_match else text_line, path, number)
        requirement_text, hashes = _hashes(text_line, path, number)
        requirement = parse_requirement(
            requirement_text, file=path, line=number, hashes=hashes, constraint=as_constraints
        )
        if as_constraints:
            _check_constraint(requirement)
        found.append(requirement)


def _included(
    path: Path, number: int, option: str, included: str, chain: tuple[tuple[Path, int], ...]
) -> Path:
    """The file ``option included`` at ``path:number`` reads: refused when it does not exist
    or is already being read (a cycle, shown with its chain of includes)."""
    target = path.parent / included
    here = (*chain, (path, number))
    reading = [p.resolve() for p, _ in here]
    if target.resolve() in reading:
        start = reading.index(target.resolve())
        base = here[0][0].parent
        steps = [f"{_shown(p, base)}:{line}" for p, line in here[start:]]
        cycle = " -> ".join([*steps, _shown(target, base)])
        raise InputError(
            f"{option} {included} includes a file already being read, a cycle: {cycle}",
            file=path,
            line=number,
        )
    if not target.is_file():
        raise InputError(f"{option} {included}: no such file ({target})", file=path, line=number)
    return target


def _shown(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when it is below it (messages stay short)."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


# -- markers, merging and constraints -------------------------------------------------------


def _located(requirement: Requirement, via: str | None = None) -> LocatedRequirement:
    if isinstance(requirement, LocatedRequirement):
        return requirement
    return LocatedRequirement(str(requirement), via=via)


def _pins(specifier: SpecifierSet) -> list[Specifier]:
    return [
        s
        for s in specifier
        if s.operator == "===" or (s.operator == "==" and not s.version.endswith(".*"))
    ]


def _contradiction(specifier: SpecifierSet) -> str | None:
    """Why no version can satisfy ``specifier``, as far as it shows without an index: a pin
    (``==1.16.0``) another of its clauses excludes (another pin, ``<1.16``, ``!=1.16.0``)."""
    pins = _pins(specifier)
    if not pins:
        return None
    pin = pins[0]
    for other in specifier:
        if other is pin:
            continue
        if pin.operator == "===":
            holds = other.operator == "===" and other.version == pin.version
        else:
            try:
                holds = other.contains(Version(pin.version), prereleases=True)
            except InvalidVersion:
                holds = False
        if not holds:
            return f"{pin} and {other} exclude each other"
    return None


def _simplified(specifier: SpecifierSet) -> SpecifierSet:
    """A specifier with a pin every other clause allows is that pin alone (``>=1,==1.16.0``
    is ``==1.16.0``): the requirement counts as pinned."""
    pins = _pins(specifier)
    if pins and _contradiction(specifier) is None:
        return SpecifierSet(str(pins[0]))
    return specifier


def _made(
    base: LocatedRequirement,
    specifier: SpecifierSet,
    extras: set[str],
    hashes: frozenset[str],
) -> LocatedRequirement:
    """A requirement like ``base`` (its name, URL, file and line) with these parts."""
    shown = f"[{','.join(sorted(extras))}]" if extras else ""
    text = f"{base.name}{shown}{_simplified(specifier)}"
    if base.url is not None:
        text = f"{base.name}{shown} @ {base.url}"
    made = LocatedRequirement(
        text, file=base.file, line=base.line, hashes=hashes, constraint=False, via=base.via
    )
    made.merged, made.constraints = base.merged, base.constraints
    made.hash_origin = base.hash_origin
    return made


def _blame(
    parts: Sequence[LocatedRequirement], other: LocatedRequirement
) -> list[LocatedRequirement]:
    """Which of ``parts`` ``other`` cannot be had with (all of them when none alone)."""
    alone = [p for p in parts if _contradiction(p.specifier & other.specifier) is not None]
    return alone or list(parts)


def _conflict(
    kind: str, other: LocatedRequirement, parts: Sequence[LocatedRequirement], why: str
) -> InputError:
    named = "; ".join(
        f"{'constraint ' if p.constraint else ''}{_shown_req(p)} at {where(p)}" for p in parts
    )
    return InputError(
        f"{kind} {_shown_req(other)} conflicts with {named}: {why}",
        file=other.file,
        line=other.line,
    )


def _with_hashes(
    merged: LocatedRequirement, other: LocatedRequirement, kind: str
) -> tuple[frozenset[str], LocatedRequirement | None]:
    """The ``--hash`` values both allow (pip intersects them), and the line they are from."""
    if not other.hashes:
        return merged.hashes, merged.hash_origin
    if not merged.hashes:
        return other.hashes, other
    common = merged.hashes & other.hashes
    if not common:
        origin = merged.hash_origin or merged
        raise _conflict(
            kind,
            other,
            [origin],
            "their --hash values have none in common, so no archive can match both",
        )
    return common, merged.hash_origin


def _merge(merged: LocatedRequirement, other: LocatedRequirement) -> LocatedRequirement:
    """One requirement of two for the same package (both without a URL): the specifiers
    intersected, the extras unioned, the hashes intersected; a contradiction between them is
    an error at ``other``'s line naming ``merged``'s."""
    specifier = merged.specifier & other.specifier
    why = _contradiction(specifier)
    if why is not None:
        raise _conflict(
            "requirement",
            other,
            _blame(merged.merged, other),
            f"{why}, so no version can satisfy both; require {canonicalize_name(other.name)} "
            "once, or with specifiers that agree",
        )
    hashes, hash_origin = _with_hashes(merged, other, "requirement")
    made = _made(merged, specifier, set(merged.extras) | set(other.extras), hashes)
    made.merged = (*merged.merged, other)
    made.hash_origin = hash_origin
    return made


def _constrain(
    requirement: LocatedRequirement, constraint: LocatedRequirement
) -> LocatedRequirement:
    """``requirement`` narrowed by ``constraint`` (a direct reference keeps its URL: its
    version, known once resolved, is checked against the constraint then)."""
    specifier = requirement.specifier
    if requirement.url is None:
        specifier = requirement.specifier & constraint.specifier
        why = _contradiction(specifier)
        if why is not None:
            raise _conflict(
                "constraint",
                constraint,
                _blame((*requirement.merged, *requirement.constraints), constraint),
                f"{why}, so no version can satisfy both",
            )
    hashes, hash_origin = _with_hashes(requirement, constraint, "constraint")
    made = _made(requirement, specifier, set(requirement.extras), hashes)
    made.constraints = (*requirement.constraints, constraint)
    made.hash_origin = hash_origin
    return made


def _holds(requirement: Requirement, environment: Callable[[], Mapping[str, str]]) -> bool:
    if requirement.marker is None:
        return True
    return requirement.marker.evaluate({**environment(), "extra": ""})


def _lazy(environment: MarkerEnvironment | None) -> Callable[[], Mapping[str, str]]:
    """``environment`` asked for at most once, when a marker first needs it."""
    found: list[Mapping[str, str]] = []

    def get() -> Mapping[str, str]:
        if not found:
            if environment is None:
                found.append({k: str(v) for k, v in default_environment().items()})
            elif callable(environment):
                found.append(environment())
            else:
                found.append(environment)
        return found[0]

    return get


def apply_constraints(
    requirements: Sequence[Requirement],
    constraints: Sequence[Requirement],
    environment: MarkerEnvironment | None = None,
    *,
    via: str | None = None,
) -> list[Requirement]:
    """``requirements`` narrowed by ``constraints``, as pip applies them: a constraint whose
    marker is false is ignored; one restricts the versions of a package that is required
    and never adds one. ``via``: how a requirement that is not a
    :class:`LocatedRequirement` came to be, for messages. A constraint already applied to a
    requirement is not applied again. A constraint no version of the requirement can
    satisfy is an error at the constraint's line naming the requirement's."""
    get = _lazy(environment)
    by_name: dict[str, list[LocatedRequirement]] = {}
    for constraint in constraints:
        if _holds(constraint, get):
            by_name.setdefault(canonicalize_name(constraint.name), []).append(_located(constraint))
    out: list[Requirement] = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        applied = requirement.constraints if isinstance(requirement, LocatedRequirement) else ()
        narrowing = [c for c in by_name.get(name, []) if not any(c is a for a in applied)]
        if not narrowing:
            out.append(requirement)
            continue
        made = _located(requirement, via)
        for constraint in narrowing:
            made = _constrain(made, constraint)
        out.append(made)
    return out


def constraints_allow(
    constraints: Sequence[Requirement],
    name: str,
    version: str,
    environment: MarkerEnvironment | None = None,
) -> bool:
    """Whether every constraint on ``name`` (whose marker holds) allows ``version``."""
    get = _lazy(environment)
    key = canonicalize_name(name)
    return all(
        c.specifier.contains(version, prereleases=True)
        for c in constraints
        if canonicalize_name(c.name) == key and _holds(c, get)
    )


def combine_requirements(
    requirements: Sequence[Requirement],
    constraints: Sequence[Requirement] = (),
    environment: MarkerEnvironment | None = None,
) -> list[Requirement]:
    """What to build, as pip reads ``requirements`` and ``constraints``: a requirement whose
    environment marker is false for ``environment`` (the build interpreter's values; None:
    this interpreter's) is dropped; the same package required several times is one
    requirement (specifiers intersected, extras unioned, ``--hash`` values intersected), at
    its first line; then the constraints apply (:func:`apply_constraints`). Requirements
    that contradict each other (``six==1.15.0`` and ``six==1.16.0``) are an error at the
    later line naming the earlier. Direct references are left as they are, each on its own
    (``SourceResolver.check`` refuses a package both referenced and required otherwise)."""
    get = _lazy(environment)
    out: list[LocatedRequirement] = []
    at: dict[str, int] = {}
    for requirement in requirements:
        if not _holds(requirement, get):
            continue
        located = _located(requirement)
        name = canonicalize_name(located.name)
        first = at.get(name)
        if first is None or located.url is not None or out[first].url is not None:
            at.setdefault(name, len(out))
            out.append(located)
            continue
        out[first] = _merge(out[first], located)
    return apply_constraints(out, constraints, get)


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

    def setting_error(
        self, key: Sequence[str], message: str, *, value: str | None = None
    ) -> InputError:
        """An error about setting ``key`` (a path of keys, ``("project", "python")``) of
        ``buildprint.toml``, at its line; with ``value`` (one item of an array), at the line
        of that item when the array spans several."""
        file = self.settings_path
        try:
            text = file.read_text(encoding="utf-8")
            line = line_of(text, list(key))
        except (OSError, UnicodeDecodeError):
            text, line = "", None
        if line is not None and value is not None:
            line = _item_line(text, line, value)
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

    def requirements(self, environment: MarkerEnvironment | None = None) -> list[Requirement]:
        """The project's requirements file as :func:`combine_requirements` makes it (markers
        evaluated for ``environment``, None: this interpreter), with its ``-c`` files."""
        file = self.root / self.settings.project.requirements
        if not file.exists():
            return []
        constraints: list[Requirement] = []
        found = read_requirements(file, None, constraints)
        return combine_requirements(found, constraints, environment)

    def validate(self) -> None:
        """Load every package settings file, so a mistake anywhere is found before building."""
        for key in self._settings_files():
            self.package_settings(key)


_KEY_OR_TABLE = re.compile(r"^\s*(\[|[A-Za-z0-9_\"'-]+\s*=)")


def _item_line(text: str, key_line: int, value: str) -> int:
    """The line of array item ``value`` (a quoted string) at or after ``key_line``, before
    the next key or table; ``key_line`` when it is not found there."""
    quoted = (json.dumps(value), f"'{value}'")
    lines = text.splitlines()
    for number in range(key_line, len(lines) + 1):
        line = lines[number - 1]
        if number > key_line and _KEY_OR_TABLE.match(line):
            break
        if any(q in line for q in quoted):
            return number
    return key_line
