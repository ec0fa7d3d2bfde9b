"""Compose a manifest from collected inputs and a policy. Pure: no disk, no network.

The order reads like the definition: defaults -> declarative policy -> plugin hook -> digests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from packaging.version import InvalidVersion, Version

from buildprint.errors import InputError
from buildprint.signature.canonical import CanonicalValue
from buildprint.signature.manifest import Component, Manifest, PackageRef
from buildprint.signature.policy import DepMode, Policy, SignatureDraft

__all__ = ["DependencyInput", "PendingDependencies", "SignatureInputs", "compose", "reduce_version"]


@dataclass(frozen=True)
class DependencyInput:
    """What a dependency offers to its dependents' signatures."""

    name: str
    version: str
    signature: str | None = None  # None while the dependency's own inputs are unknown
    artifact: str | None = None  # content digest of its built wheel; None until built


class PendingDependencies(Exception):
    """A dependency in ``artifact`` (or ``signature``) mode has no result yet."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


@dataclass(frozen=True)
class SignatureInputs:
    """Everything the collectors found about one package, as plain values."""

    package: PackageRef
    source: CanonicalValue
    patches: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, CanonicalValue] = field(default_factory=dict)
    env: Mapping[str, CanonicalValue] = field(default_factory=dict)
    plugin: CanonicalValue = None
    build_deps: Mapping[str, CanonicalValue] = field(default_factory=dict)
    deps: tuple[DependencyInput, ...] = ()
    toolchain: Mapping[str, CanonicalValue] = field(default_factory=dict)
    host: Mapping[str, CanonicalValue] = field(default_factory=dict)
    configs: Mapping[str, str] = field(default_factory=dict)
    rebuild: int = 0
    recorded: Mapping[str, CanonicalValue] = field(default_factory=dict)


SignatureHook = Callable[[SignatureDraft], None]


def reduce_version(version: str, granularity: str) -> str:
    """``1.26.4`` -> ``1.26`` (minor) or ``1`` (major); ``full`` keeps it as is."""
    if granularity == "full":
        return version
    try:
        release = Version(version).release
    except InvalidVersion:
        raise InputError(f"version {version!r} is not a PEP 440 version") from None
    keep = 2 if granularity == "minor" else 1
    padded = (*release, 0, 0)[:keep]
    return ".".join(str(part) for part in padded)


def _dep_contribution(dep: DependencyInput, mode: DepMode) -> CanonicalValue:
    if mode == "signature":
        return {"mode": mode, "signature": dep.signature}
    if mode == "artifact":
        return {"mode": mode, "artifact": dep.artifact}
    granularity = "full" if mode == "version" else mode
    return {"mode": mode, "version": reduce_version(dep.version, granularity)}


def _deps_value(
    deps: tuple[DependencyInput, ...], policy: Policy
) -> tuple[dict[str, CanonicalValue], dict[str, CanonicalValue]]:
    value: dict[str, CanonicalValue] = {}
    recorded: dict[str, CanonicalValue] = {}
    pending = []
    for dep in sorted(deps, key=lambda d: d.name):
        mode = policy.dep_mode(dep.name)
        recorded[dep.name] = {
            "mode": mode,
            "version": dep.version,
            "signature": dep.signature,
            "artifact": dep.artifact,
        }
        if mode == "none":
            continue
        if (mode == "artifact" and dep.artifact is None) or (
            mode == "signature" and dep.signature is None
        ):
            pending.append(dep.name)
            continue
        value[dep.name] = _dep_contribution(dep, mode)
    if pending:
        raise PendingDependencies(pending)
    return value, recorded


def compose(
    inputs: SignatureInputs, policy: Policy | None = None, hook: SignatureHook | None = None
) -> Manifest:
    """Build the manifest of one package.

    Raises :class:`PendingDependencies` when a dependency whose result counts is not built yet.
    """
    policy = policy or Policy()
    deps_value, deps_recorded = _deps_value(inputs.deps, policy)
    hashed_configs: dict[str, CanonicalValue] = {
        key: value
        for key, value in inputs.configs.items()
        if policy.configs is None or key in policy.configs
    }
    defaults: dict[str, CanonicalValue] = {
        "version": reduce_version(inputs.package.version, policy.version or "full"),
        "source": inputs.source,
        "patches": dict(inputs.patches),
        "settings": dict(inputs.settings),
        "env": dict(inputs.env),
        "plugin": inputs.plugin,
        "build-deps": dict(inputs.build_deps),
        "deps": deps_value,
        "toolchain": dict(inputs.toolchain),
        "host": dict(inputs.host),
        "configs": hashed_configs,
        "rebuild": inputs.rebuild,
    }
    if policy.clear:
        # Explicit declarations add back what they name; everything else starts empty.
        values = {}
        if policy.version is not None:
            values["version"] = defaults["version"]
        if policy.configs is not None:
            values["configs"] = hashed_configs
        if policy.deps:
            values["deps"] = {k: v for k, v in deps_value.items() if k in policy.deps}
    else:
        values = {name: v for name, v in defaults.items() if name not in policy.remove}
    if policy.extra:
        values["extra"] = {k: v for k, v in policy.extra.items()}

    if hook is not None:
        draft = SignatureDraft(values)
        hook(draft)
        values = draft.values()

    recorded: dict[str, CanonicalValue] = dict(inputs.recorded)
    recorded["policy"] = policy.to_json()
    if deps_recorded:
        recorded["deps"] = deps_recorded
    unhashed: dict[str, CanonicalValue] = {
        k: v for k, v in inputs.configs.items() if k not in hashed_configs
    }
    if unhashed:
        recorded["configs"] = unhashed
    recorded["version"] = inputs.package.version
    return Manifest(
        package=inputs.package,
        components={name: Component.of(name, value) for name, value in values.items()},
        recorded=recorded,
    )
