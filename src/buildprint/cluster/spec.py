"""A cluster build task, as data: everything a worker needs to build one package, by digest.

The coordinator uploads each input to the shared remote's CAS (the sdist or a tar of the
source tree, the patches, the plugin modules, the locked build wheels) and then this spec,
as one more blob; a Dask task carries only the spec's digest. Nothing secret is in it: a
settings variable whose name looks secret travels as its name only (the worker takes the
value from its own environment, and its re-computed signature says whether it is the same),
pass-through variables are never in it, and remote URLs carry no credentials.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from buildprint.errors import InputError
from buildprint.resolve.lockfile import LockedBuildDeps, PinnedWheel

__all__ = ["SPEC_FORMAT", "DepSpec", "SourceSpec", "TaskSpec", "lock_entry_data"]

#: Bumped when a spec's meaning changes; a worker refuses a format it does not read.
SPEC_FORMAT = 1


@dataclass(frozen=True)
class SourceSpec:
    """The package's source: an archive (the file itself) or a tree (a tar of exactly the
    entries its digest covers), with the fields its signature and provenance use."""

    kind: str  # "archive" | "tree"
    blob: str  # sha256 of the uploaded file
    filename: str
    location: str
    digest: str
    files: int
    size: int
    raw_sha256: str | None
    commit: str | None = None
    ref: str | None = None


@dataclass(frozen=True)
class DepSpec:
    """One dependency's result, as the signature takes it."""

    name: str
    version: str
    signature: str | None
    artifact: str | None


@dataclass(frozen=True)
class TaskSpec:
    """One package's build, as a worker gets it."""

    buildprint: str  # the coordinator's version: a worker of another refuses
    name: str
    version: str
    signature: str  # what the coordinator computed: the worker must compute the same
    manifest: dict[str, Any]  # the coordinator's manifest, to say what differs if it does
    project: dict[str, Any]  # buildprint.toml as the worker writes it (no remotes, no index)
    settings: dict[str, Any]  # packages/<name>.toml, secret-looking env values left out
    secret_env: list[str]  # those names: the worker takes their values from its environment
    files: dict[str, str]  # project-relative path -> blob (plugin and host-hook modules)
    source: SourceSpec
    patches: dict[str, str]  # patch file name -> blob, in the order they apply
    locked: dict[str, Any]  # the lock entry
    wheels: dict[str, str]  # locked wheel file name -> blob
    deps: list[DepSpec]
    install_deps: list[str]
    remote: str  # the shared remote (no credentials: workers have their own)
    trusted_keys: list[str]  # public keys whose records the worker may take as dependencies
    force: bool = False
    format: int = SPEC_FORMAT

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> TaskSpec:
        try:
            raw = json.loads(data)
            if raw.get("format") != SPEC_FORMAT:
                raise InputError(
                    f"task spec format {raw.get('format')!r}; this worker reads {SPEC_FORMAT}"
                )
            raw["source"] = SourceSpec(**raw["source"])
            raw["deps"] = [DepSpec(**d) for d in raw["deps"]]
            return cls(**raw)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InputError(f"unreadable task spec: {exc}") from None

    def lock_entry(self) -> LockedBuildDeps:
        raw = self.locked
        return LockedBuildDeps(
            requires=list(raw["requires"]),
            wheels=[PinnedWheel(**w) for w in raw["wheels"]],
            source=raw.get("source"),
            runtime=raw.get("runtime"),
        )


def lock_entry_data(locked: LockedBuildDeps) -> dict[str, Any]:
    """A lock entry as spec data (:meth:`TaskSpec.lock_entry` reads it back)."""
    return asdict(locked)
