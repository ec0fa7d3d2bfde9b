"""The action-cache record: a build signature mapped to its manifest and artifact digests."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from buildprint.errors import StoreError
from buildprint.signature.canonical import canonical_bytes

__all__ = ["RECORD_FORMAT", "ActionRecord", "Artifact", "is_digest", "utc_now"]

#: Written into every record so a future layout change can be told apart from corruption.
RECORD_FORMAT = "buildprint-record/1"

_DIGEST = re.compile(r"[0-9a-f]{64}")


def is_digest(value: object) -> bool:
    """True if ``value`` is a lowercase hex SHA-256, the only digest form buildprint uses."""
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def utc_now() -> str:
    """Current time as ISO-8601 UTC with a ``Z`` suffix, second precision."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _field(obj: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    where = f"record {where}" if where else "record"
    if key not in obj:
        raise StoreError(f"{where} lacks {key!r}")
    value = obj[key]
    # bool is an int subclass; a size of ``true`` is corruption, not 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise StoreError(f"{where} field {key!r} must be {kind.__name__}")
    return value


@dataclass(frozen=True)
class Artifact:
    """One built file: its name, the CAS key of its bytes, and its content digest."""

    filename: str
    sha256: str
    size: int
    content_digest: str

    def __post_init__(self) -> None:
        # The filename ends up in wheelhouse paths; refuse anything that could escape a folder.
        if not self.filename or "/" in self.filename or "\\" in self.filename:
            raise StoreError(f"artifact filename {self.filename!r} is not a plain file name")
        if self.filename in {".", ".."}:
            raise StoreError(f"artifact filename {self.filename!r} is not a plain file name")
        if not is_digest(self.sha256):
            raise StoreError(f"artifact {self.filename}: sha256 {self.sha256!r} is not a digest")
        if not is_digest(self.content_digest):
            raise StoreError(
                f"artifact {self.filename}: content_digest {self.content_digest!r} is not a digest"
            )
        if self.size < 0:
            raise StoreError(f"artifact {self.filename}: negative size")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON form, as stored inside the record."""
        return {
            "filename": self.filename,
            "sha256": self.sha256,
            "size": self.size,
            "content_digest": self.content_digest,
        }

    @classmethod
    def from_json(cls, value: Any) -> Artifact:
        """Parse and validate one artifact entry; raise ``StoreError`` if malformed."""
        if not isinstance(value, dict):
            raise StoreError("record artifact entry must be an object")
        return cls(
            filename=_field(value, "filename", str, "artifact"),
            sha256=_field(value, "sha256", str, "artifact"),
            size=_field(value, "size", int, "artifact"),
            content_digest=_field(value, "content_digest", str, "artifact"),
        )


@dataclass(frozen=True)
class ActionRecord:
    """What one build produced: ``signature -> (manifest, artifacts)``.

    ``manifest`` is the manifest JSON object produced by the signature core, kept opaque
    here. ``created`` is informational (newest-first ordering), never part of an identity.

    ``signature`` is the key the record is stored under. A build whose discovered inputs
    (the system files it read) differ from those of the build first stored under its
    signature is a *variant*: it is stored under a key of its own (see
    :func:`buildprint.inputs.discovered.variant_key`) and ``variant_of`` names the signature
    of its manifest. ``reads`` is the CAS digest of what the build read (``audit``), kept
    where it was built.
    """

    signature: str
    name: str
    version: str
    manifest: dict[str, Any]
    artifacts: tuple[Artifact, ...]
    created: str = field(default_factory=utc_now)
    variant_of: str | None = None
    reads: str | None = None

    def __post_init__(self) -> None:
        # The signature names the record file (ac/<signature>.json); a non-digest could
        # walk out of the store, so it is checked here rather than at every path join.
        if not is_digest(self.signature):
            raise StoreError(f"record signature {self.signature!r} is not a digest")
        if not self.name:
            raise StoreError(f"record {self.signature}: empty name")
        if not isinstance(self.manifest, dict):
            raise StoreError(f"record {self.signature}: manifest must be an object")
        claimed = self.manifest.get("signature")
        if self.variant_of is not None and not is_digest(self.variant_of):
            raise StoreError(f"record {self.signature}: variant_of is not a digest")
        if self.reads is not None and not is_digest(self.reads):
            raise StoreError(f"record {self.signature}: reads is not a digest")
        if isinstance(claimed, str) and claimed != (self.variant_of or self.signature):
            raise StoreError(
                f"record {self.signature}: manifest claims signature {claimed}",
            )
        if not isinstance(self.artifacts, tuple):
            object.__setattr__(self, "artifacts", tuple(self.artifacts))

    @property
    def manifest_signature(self) -> str:
        """The signature of the build's manifest (the key, unless this is a variant)."""
        return self.variant_of or self.signature

    @property
    def discovered(self) -> dict[str, str] | None:
        """``path -> digest`` of the system files the build read (``None``: not recorded)."""
        part = self.manifest.get("discovered")
        value = part.get("value") if isinstance(part, dict) else None
        if not isinstance(value, dict):
            return None
        return {k: v for k, v in value.items() if isinstance(v, str)}

    def blobs(self) -> set[str]:
        """The CAS digests the record uses: its artifacts and its read report."""
        return {a.sha256 for a in self.artifacts} | ({self.reads} if self.reads else set())

    def component_digests(self) -> dict[str, str]:
        """``component name -> digest`` from the manifest (empty if it has none)."""
        components = self.manifest.get("components")
        if not isinstance(components, dict):
            return {}
        out: dict[str, str] = {}
        for name, entry in components.items():
            if isinstance(entry, dict) and isinstance(entry.get("digest"), str):
                out[name] = entry["digest"]
        return out

    def to_json(self) -> dict[str, Any]:
        """Plain JSON form of the record."""
        out: dict[str, Any] = {
            "format": RECORD_FORMAT,
            "signature": self.signature,
            "name": self.name,
            "version": self.version,
            "manifest": self.manifest,
            "artifacts": [artifact.to_json() for artifact in self.artifacts],
            "created": self.created,
        }
        if self.variant_of is not None:
            out["variant_of"] = self.variant_of
        if self.reads is not None:
            out["reads"] = self.reads
        return out

    def to_bytes(self) -> bytes:
        """Canonical JSON bytes: the same record gives the same bytes on any machine."""
        return canonical_bytes(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> ActionRecord:
        """Parse and validate record bytes; anything malformed raises ``StoreError``.

        Unknown top-level keys are ignored so that a newer writer sharing a remote
        cache does not make older readers treat its records as corrupt.
        """
        try:
            obj = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise StoreError(f"record is not UTF-8 JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise StoreError("record must be a JSON object")
        fmt = obj.get("format")
        if fmt != RECORD_FORMAT:
            raise StoreError(f"record format {fmt!r} is not {RECORD_FORMAT!r}")
        artifacts = _field(obj, "artifacts", list, "")
        return cls(
            signature=_field(obj, "signature", str, ""),
            name=_field(obj, "name", str, ""),
            version=_field(obj, "version", str, ""),
            manifest=_field(obj, "manifest", dict, ""),
            artifacts=tuple(Artifact.from_json(item) for item in artifacts),
            created=_field(obj, "created", str, ""),
            variant_of=_optional(obj, "variant_of"),
            reads=_optional(obj, "reads"),
        )


def _optional(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise StoreError(f"record field {key!r} must be str")
    return value
