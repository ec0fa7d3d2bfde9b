"""Package-controlled signature policy: the declarative ``[signature]`` table and the draft a
plugin's ``signature(pkg, sig)`` hook edits (the xmake/Conan ``package_id`` part)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from buildprint.errors import PolicyError
from buildprint.signature.canonical import CanonicalValue, normalize

__all__ = [
    "DEFAULT_DEP_MODE",
    "DEP_MODES",
    "STANDARD_COMPONENTS",
    "VERSION_GRANULARITIES",
    "DepMode",
    "Policy",
    "SignatureDraft",
    "VersionGranularity",
]

DepMode = Literal["signature", "artifact", "version", "minor", "major", "none"]
VersionGranularity = Literal["full", "minor", "major"]

DEP_MODES: tuple[str, ...] = get_args(DepMode)
VERSION_GRANULARITIES: tuple[str, ...] = get_args(VersionGranularity)
DEFAULT_DEP_MODE: DepMode = "artifact"

#: Components the defaults produce, in explanation order. ``scheme`` is not among them: it is
#: always part of the signature and cannot be removed.
STANDARD_COMPONENTS: tuple[str, ...] = (
    "version",
    "source",
    "patches",
    "settings",
    "env",
    "plugin",
    "build-deps",
    "deps",
    "toolchain",
    "host",
    "configs",
    "rebuild",
)


@dataclass(frozen=True)
class Policy:
    """The declarative policy of one package (``[signature]`` in ``packages/<name>.toml``)."""

    clear: bool = False
    remove: tuple[str, ...] = ()
    version: VersionGranularity | None = None
    configs: tuple[str, ...] | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    deps: Mapping[str, DepMode] = field(default_factory=dict)
    #: Whether a stored build is checked against the system files it read (its discovered
    #: inputs), and which of those files not to check. Neither enters the signature: they
    #: decide which stored build is still valid, not what a build is.
    discovered: bool = True
    discovered_ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in self.remove:
            if name not in STANDARD_COMPONENTS:
                raise PolicyError(
                    f"remove: unknown component {name!r} (known: {', '.join(STANDARD_COMPONENTS)})"
                )
        if self.version is not None and self.version not in VERSION_GRANULARITIES:
            raise PolicyError(
                f"version: unknown granularity {self.version!r} "
                f"(known: {', '.join(VERSION_GRANULARITIES)})"
            )
        for dep, mode in self.deps.items():
            if mode not in DEP_MODES:
                raise PolicyError(
                    f"deps.{dep}: unknown mode {mode!r} (known: {', '.join(DEP_MODES)})"
                )

    def dep_mode(self, dep: str) -> DepMode:
        return self.deps.get(dep, DEFAULT_DEP_MODE)

    def to_json(self) -> dict[str, CanonicalValue]:
        """The policy as recorded in a manifest (for explanations)."""
        return normalize(
            {
                "clear": self.clear,
                "remove": list(self.remove),
                "version": self.version or "full",
                "configs": None if self.configs is None else list(self.configs),
                "extra": dict(self.extra),
                "deps": dict(self.deps),
            }
        )  # type: ignore[return-value]


class SignatureDraft:
    """The component set under construction, as a plugin hook sees it (``sig``).

    ``add`` introduces a component that must not exist yet, ``set`` replaces or introduces,
    ``remove`` drops one that exists, ``clear`` drops all. Values must be canonical JSON
    (strings, integers, booleans, lists, string-keyed mappings).
    """

    def __init__(self, values: Mapping[str, CanonicalValue]) -> None:
        self._values: dict[str, CanonicalValue] = dict(values)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._values))

    def get(self, name: str) -> CanonicalValue:
        return self._values.get(name)

    def add(self, name: str, value: Any) -> None:
        self._check_name(name)
        if name in self._values:
            raise PolicyError(f"sig.add: component {name!r} exists already (use sig.set)")
        self._values[name] = self._canonical(name, value)

    def set(self, name: str, value: Any) -> None:
        self._check_name(name)
        self._values[name] = self._canonical(name, value)

    def remove(self, name: str) -> None:
        if name not in self._values:
            raise PolicyError(
                f"sig.remove: no component {name!r} (present: {', '.join(self) or 'none'})"
            )
        del self._values[name]

    def clear(self) -> None:
        self._values.clear()

    def values(self) -> dict[str, CanonicalValue]:
        return dict(self._values)

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or not name or "/" in name or name == "scheme":
            raise PolicyError(f"invalid component name {name!r}")

    @staticmethod
    def _canonical(name: str, value: Any) -> CanonicalValue:
        try:
            return normalize(value)
        except TypeError as exc:
            raise PolicyError(f"component {name!r}: {exc}") from None
