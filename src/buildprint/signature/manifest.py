"""The manifest: every component's value and digest, and the signature over them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from packaging.utils import canonicalize_name

from buildprint.errors import InputError
from buildprint.signature.canonical import (
    CanonicalValue,
    canonical_bytes,
    digest_value,
    normalize,
)

__all__ = ["DISCOVERED", "SCHEME", "Component", "Manifest", "PackageRef", "signature_of"]

#: Version of the signature algorithm. Bump it whenever hashing or component values change
#: meaning, or builds under the same inputs would produce different wheels, so old and new
#: signatures can never collide (history in docs/signature.md).
SCHEME = 3

#: The manifest part a finished build adds: the system files it read (not in the signature).
DISCOVERED = "discovered"


@dataclass(frozen=True)
class PackageRef:
    """What is being built: name (PEP 503-normalized), full version, and kind."""

    name: str
    version: str
    kind: str = "wheel"

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", canonicalize_name(self.name))

    def to_json(self) -> dict[str, CanonicalValue]:
        return {"name": self.name, "version": self.version, "kind": self.kind}


@dataclass(frozen=True)
class Component:
    """One named input group: its value (readable) and the digest of that value."""

    name: str
    value: CanonicalValue
    digest: str

    @classmethod
    def of(cls, name: str, value: Any) -> Component:
        canonical = normalize(value)
        return cls(name, canonical, digest_value(canonical))


def signature_of(scheme: int, package: PackageRef, components: Mapping[str, Component]) -> str:
    """The signature: digest of ``{scheme, package, components: {name: digest}}``.

    The package name and kind are part of it so that two packages whose policies clear every
    component can never share a store entry.
    """
    return digest_value(
        {
            "scheme": scheme,
            "package": {"name": package.name, "kind": package.kind},
            "components": {name: c.digest for name, c in components.items()},
        }
    )


@dataclass(frozen=True)
class Manifest:
    """Readable record of a signature. ``recorded`` holds facts kept for explanation only
    (provenance, unhashed configs, dependency signatures) — they never enter the signature.

    ``discovered`` is the part only a finished build knows: the system files it read, path ->
    digest (``docs/discovered.md``). It is not in the signature (which is known before the
    build); it is what a stored build under that signature stays valid on."""

    package: PackageRef
    components: Mapping[str, Component]
    recorded: Mapping[str, CanonicalValue] = field(default_factory=dict)
    scheme: int = SCHEME
    signature: str = ""
    discovered: Component | None = None

    def __post_init__(self) -> None:
        ordered = {name: self.components[name] for name in sorted(self.components)}
        object.__setattr__(self, "components", ordered)
        object.__setattr__(self, "recorded", normalize(dict(self.recorded)))
        computed = signature_of(self.scheme, self.package, ordered)
        if self.signature and self.signature != computed:
            raise InputError(
                f"manifest signature {self.signature} does not match its components ({computed})"
            )
        object.__setattr__(self, "signature", computed)

    def value(self, name: str) -> CanonicalValue:
        return self.components[name].value

    def with_discovered(self, inputs: Mapping[str, str]) -> Manifest:
        """This manifest with the ``discovered`` part of a finished build."""
        return replace(self, discovered=Component.of(DISCOVERED, dict(inputs)))

    @property
    def discovered_inputs(self) -> dict[str, str]:
        """``path -> digest`` of the discovered part (empty when there is none)."""
        value = self.discovered.value if self.discovered is not None else None
        return (
            {k: v for k, v in value.items() if isinstance(v, str)}
            if isinstance(value, dict)
            else {}
        )

    def to_json(self) -> dict[str, CanonicalValue]:
        out: dict[str, CanonicalValue] = {
            "scheme": self.scheme,
            "signature": self.signature,
            "package": self.package.to_json(),
            "components": {
                name: {"digest": c.digest, "value": c.value} for name, c in self.components.items()
            },
            "recorded": dict(self.recorded),
        }
        if self.discovered is not None:
            out[DISCOVERED] = {"digest": self.discovered.digest, "value": self.discovered.value}
        return out

    def to_bytes(self) -> bytes:
        """Canonical bytes, as stored in records and embedded in wheels."""
        return canonical_bytes(self.to_json())

    def to_text(self) -> str:
        """Indented JSON for people."""
        return json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, data: Any, *, source: str = "<manifest>") -> Manifest:
        """Rebuild a manifest, checking every component digest and the signature."""
        try:
            package = PackageRef(**data["package"])
            components: dict[str, Component] = {}
            for name, entry in data["components"].items():
                component = Component.of(name, entry["value"])
                if component.digest != entry["digest"]:
                    raise InputError(
                        f"component {name!r} digest does not match its value", file=source
                    )
                components[name] = component
            discovered = None
            if DISCOVERED in data:
                entry = data[DISCOVERED]
                discovered = Component.of(DISCOVERED, entry["value"])
                if discovered.digest != entry["digest"] or not isinstance(discovered.value, dict):
                    raise InputError("the discovered part does not match its digest", file=source)
            return cls(
                package=package,
                components=components,
                recorded=data.get("recorded", {}),
                scheme=int(data["scheme"]),
                signature=str(data["signature"]),
                discovered=discovered,
            )
        except InputError as exc:
            raise InputError(exc.message, file=source) from None
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise InputError(f"not a buildprint manifest ({exc!r})", file=source) from None

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<manifest>") -> Manifest:
        try:
            parsed = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"not JSON: {exc}", file=source) from None
        return cls.from_json(parsed, source=source)
