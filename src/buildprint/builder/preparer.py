"""Preparing a package for its build: its patched source tree, and its locked build
requirements (read from the backend in a fresh environment)."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from packaging.requirements import Requirement
from packaging.tags import Tag
from packaging.utils import canonicalize_name

from buildprint.builder import backend
from buildprint.builder.environment import BuildEnvironment, EnvironmentPool
from buildprint.builder.patching import apply_patches
from buildprint.errors import InputError
from buildprint.fsio import abandoned, owner_tag
from buildprint.inputs.extract import safe_extract
from buildprint.inputs.files import file_digest
from buildprint.inputs.tree import copy_tree
from buildprint.plan.graph import LockContext
from buildprint.project.settings import PackageSettings
from buildprint.resolve.index import PackageIndex
from buildprint.resolve.lockfile import LockedBuildDeps, PinnedWheel
from buildprint.resolve.metadata import install_requirements, requires_dist
from buildprint.resolve.pins import fetch_pinned, resolve, tags_for
from buildprint.resolve.sources import ResolvedSource, SourceResolver

__all__ = ["Preparer", "copy_source_folder"]


@dataclass
class Preparer:
    """Turns a source into a patched tree at a stable path, and locks build requirements."""

    index: PackageIndex
    resolver: SourceResolver
    work_root: Path
    logs: Path  # where lock and build logs are kept (a failure's message points there)
    python: str
    python_version: str
    #: Locked wheels already on this machine, by sha256 (a cluster worker's, downloaded from
    #: the shared remote's CAS): taken instead of asking the index.
    given: dict[str, Path] = field(default_factory=dict)
    _swept: bool = field(default=False, repr=False)
    _resolutions: dict[tuple[tuple[str, ...], tuple[PinnedWheel, ...]], list[PinnedWheel]] = field(
        default_factory=dict, repr=False
    )

    @cached_property
    def tags(self) -> frozenset[Tag]:
        """The wheel tags the build interpreter installs (what a built wheel must carry)."""
        return frozenset(tags_for(self.python_version))

    @cached_property
    def environments(self) -> EnvironmentPool:
        """The shared build environments, beside the work folder (``<store>/envs``)."""
        return EnvironmentPool(self.work_root.parent / "envs", self.python)

    def environment(
        self, pinned: Sequence[PinnedWheel], built: Sequence[tuple[Path, str]], scratch: Path
    ) -> BuildEnvironment:
        """A build environment holding the locked wheels ``pinned`` and the graph's own
        wheels ``built`` (path, sha256), lent to one build whose scratch folder is
        ``scratch``."""
        wanted = [(w.filename, w.sha256) for w in pinned] + [(p.name, sha) for p, sha in built]
        shared = self.environments.get(
            wanted, lambda: [*self.wheels(pinned), *(p for p, _sha in built)]
        )
        return shared.borrow(scratch)

    def fresh_environment(
        self, pinned: Sequence[PinnedWheel], built: Sequence[tuple[Path, str]], scratch: Path
    ) -> BuildEnvironment:
        """A build environment of its own in ``scratch`` (none of the shared ones), holding
        what :meth:`environment` would: for ``verify``, which trusts no earlier state."""
        env = BuildEnvironment(scratch / "env", interpreter=self.python, scratch=scratch)
        env.create().install([*self.wheels(pinned), *(p for p, _sha in built)])
        return env

    def source_tree(self, source: ResolvedSource, patches: Sequence[Path], dest: Path) -> Path:
        """Extract (or copy) the source into ``dest`` and apply the patches in order.

        The tree holds exactly the entries the source digest covers (docs/source-digest.md):
        debris a digest ignores (``build/``, ``.git``, caches ...) never reaches the build.
        A folder is copied by the walk that digests it, and a copy whose digest is not the
        one the signature holds (the folder changed since it was read) is refused.
        """
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        located = self.resolver.fetch(source)
        if located.is_dir():
            root = copy_source_folder(source, located, dest)
        else:
            # A local archive is digested by stat at plan time; one replaced since must not be
            # built under the signature of the one that was read.
            local = source.local is not None and source.raw_sha256 is not None
            if local and file_digest(located) != source.raw_sha256:
                raise InputError(
                    f"source archive of {source.name} changed since its digest was taken "
                    "(while this run was planned); run again",
                    file=located,
                )
            root = safe_extract(located, dest)
        apply_patches(root, list(patches))
        return root

    def wheels(self, pinned: Sequence[PinnedWheel]) -> list[Path]:
        """Download (verified, cached) the locked wheels, under their own file names."""
        return [self.given.get(w.sha256) or fetch_pinned(w, self.index) for w in pinned]

    def lock(
        self,
        name: str,
        previous: LockedBuildDeps | None,
        source: ResolvedSource,
        patches: list[Path],
        settings: PackageSettings,
        context: LockContext,
    ) -> LockedBuildDeps:
        """Find the package's build requirements (static and from the backend) and pin the
        ones the index supplies, keeping the ``previous`` entry's pins where they still
        satisfy them (a new source moves only what it must; ``lock --upgrade`` passes none).
        The graph's own build tools among them are built first (``context.provide``) and
        installed for the backend to answer. With ``context.install_requirements``, also
        read its install requirements."""
        kept = previous.wheels if previous is not None else []
        with self._scratch(f"lock-{name}") as tmp:
            root = self.source_tree(source, patches, Path(tmp) / "src")
            system = backend.read_build_system(root)
            origin = root / "pyproject.toml"
            provided = context.provide(system.requires)
            wheels = self._resolve(provided.index, kept, origin)
            log = self.logs / f"{name}-{source.version}-lock.log"
            self.logs.mkdir(parents=True, exist_ok=True)
            log.unlink(missing_ok=True)
            env = self.environment(wheels, provided.built, Path(tmp))
            dynamic = backend.get_requires_for_build_wheel(
                root, env, settings.config_settings, settings.env, log_path=log
            )
            requires = list(dict.fromkeys([*system.requires, *dynamic]))
            if len(requires) > len(system.requires):
                provided = context.provide(requires)
                wheels = self._resolve(
                    provided.index,
                    [*wheels, *(w for w in kept if w.name not in {p.name for p in wheels})],
                    origin,
                )
                if context.install_requirements:  # shared environments never change
                    env = self.environment(wheels, provided.built, Path(tmp))
            runtime = None
            if context.install_requirements:
                runtime = install_requirements(
                    root,
                    lambda: backend.prepare_metadata_for_build_wheel(
                        root,
                        env,
                        Path(tmp) / "metadata",
                        settings.config_settings,
                        settings.env,
                        log_path=log,
                    ),
                )
        return LockedBuildDeps(requires=requires, wheels=wheels, runtime=runtime)

    def prebuilt(
        self,
        name: str,
        requirement: Requirement,
        previous: LockedBuildDeps | None,
        settings_file: Path,
    ) -> tuple[ResolvedSource, LockedBuildDeps]:
        """A ``prebuilt = true`` package: its wheel from the index (the one ``previous``
        pinned while it still satisfies ``requirement``), as a source, and its lock entry
        (the wheel's sha256; its install requirements, read from the wheel)."""
        pins = previous.wheels if previous is not None else []
        pin = next((w for w in pins if canonicalize_name(w.name) == name), None)
        if pin is None or not requirement.specifier.contains(pin.version, prereleases=True):
            text = str(requirement.name) + str(requirement.specifier)
            found = self._resolve([text], [], settings_file)
            pin = next(w for w in found if canonicalize_name(w.name) == name)
        wheel = fetch_pinned(pin, self.index)
        runtime = _wheel_requirements(wheel, settings_file)
        source = ResolvedSource(
            name,
            pin.version,
            pin.url,
            pin.sha256,
            files=1,
            size=wheel.stat().st_size,
            raw_sha256=pin.sha256,
            local=wheel,
        )
        return source, LockedBuildDeps([], [pin], runtime=runtime)

    def _resolve(
        self,
        requirements: Sequence[str],
        preferences: Sequence[PinnedWheel],
        origin: Path,
    ) -> list[PinnedWheel]:
        """:func:`~buildprint.resolve.pins.resolve`, once per run for the same question (most
        packages of a graph ask for the same ``setuptools>=61``)."""
        key = (tuple(requirements), tuple(preferences))
        found = self._resolutions.get(key)
        if found is None:
            found = resolve(
                requirements,
                self.index,
                self.python_version,
                preferences=preferences,
                origin=origin,
            )
            self._resolutions[key] = found
        return list(found)

    @contextmanager
    def _scratch(self, what: str) -> Iterator[Path]:
        """A :meth:`work_folder`, removed when the block ends."""
        folder = self.work_folder(what)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def work_folder(self, what: str) -> Path:
        """A new folder of this process's own in the work folder, for ``what`` (named
        ``<host>.<pid>.<what>.<token>``). The first call of a run removes the folders of
        processes of this host that are gone (a killed run's leftovers)."""
        self.work_root.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            self._swept = True
            for entry in self.work_root.iterdir():
                if entry.is_dir() and abandoned(entry.name):
                    shutil.rmtree(entry, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=f"{owner_tag()}.{what}.", dir=self.work_root))


def copy_source_folder(source: ResolvedSource, located: Path, dest: Path) -> Path:
    """Copy a folder source to ``dest/<name>-<version>`` by the walk that digests it; a copy
    whose digest is not the signed one (the folder changed since it was read) is refused."""
    root = dest / f"{source.name}-{source.version}"
    if copy_tree(located, root).digest != source.digest:
        raise InputError(
            f"source folder of {source.name} changed since its digest was taken "
            "(while this run was planned); run again",
            file=located,
        )
    return root


def _wheel_requirements(wheel: Path, settings_file: Path) -> list[str]:
    """``Requires-Dist`` of a prebuilt wheel; a file that is no wheel is bad input at the
    package's settings (which asked for it)."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [
                n
                for n in archive.namelist()
                if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            ]
            if len(names) != 1:
                raise InputError(
                    f"prebuilt wheel {wheel.name} has {len(names)} .dist-info/METADATA files "
                    "(a wheel has one)",
                    file=settings_file,
                )
            return requires_dist(archive.read(names[0]).decode("utf-8", errors="replace"))
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(
            f"prebuilt wheel {wheel.name} cannot be read: {exc}", file=settings_file
        ) from None
