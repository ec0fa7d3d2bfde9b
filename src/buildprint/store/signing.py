"""Ed25519 signing of action records: keys in the store, signed envelopes, verification.

An envelope is canonical JSON ``{"record": <record object>, "signatures": [{"key": "ed25519:<b64>",
"sig": "<b64>"}]}``. Each signature covers a fixed context string plus the canonical bytes of the
record object, so the record can be re-encoded by any reader and a signature made for some other
purpose never verifies as a record signature.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from buildprint.errors import InputError, StoreError
from buildprint.signature.canonical import canonical_bytes

__all__ = [
    "KEY_FILE",
    "KEY_PREFIX",
    "SigningKey",
    "UntrustedRecord",
    "generate_key",
    "load_signing_key",
    "parse_public_key",
    "sign_record",
    "verify_envelope",
]

#: Where the private key lives, relative to the store root.
KEY_FILE = Path("keys") / "ed25519.key"
KEY_PREFIX = "ed25519:"
_CONTEXT = b"buildprint-record-signature/1\n"

Reason = Literal["unsigned", "unknown key", "bad signature", "malformed"]


class UntrustedRecord(StoreError):
    """A remote record that must not be used; ``reason`` says why."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"untrusted record: {reason}" + (f" ({detail})" if detail else ""))
        self.reason: Reason = reason


@dataclass(frozen=True)
class SigningKey:
    """A private key and its public identity ``ed25519:<base64 raw public key>``."""

    private: Ed25519PrivateKey
    public_id: str

    @classmethod
    def from_raw(cls, raw: bytes) -> SigningKey:
        private = Ed25519PrivateKey.from_private_bytes(raw)
        return cls(private, _public_id(private.public_key()))

    def __repr__(self) -> str:
        return f"SigningKey({self.public_id})"


def _public_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """Parse ``ed25519:<base64>``; anything else is an ``InputError``."""
    if not text.startswith(KEY_PREFIX):
        raise InputError(f"public key {text!r} must start with {KEY_PREFIX!r}")
    try:
        raw = base64.b64decode(text[len(KEY_PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise InputError(f"public key {text!r} is not a base64 32-byte Ed25519 key") from None


def _raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def generate_key(store_root: Path) -> str:
    """Create the store's signing key (mode 0600) and return its public id.

    An existing key is kept, never replaced: remotes and teammates already trust it.
    """
    path = Path(store_root) / KEY_FILE
    if path.exists():
        key = _read_key_file(path)
        return key.public_id
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    private = Ed25519PrivateKey.generate()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # O_EXCL + 0600 from the start: the key is never readable by others, not even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(base64.b64encode(_raw_private(private)) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            # link() fails if another process created the key meanwhile: keep theirs.
            os.link(tmp, path)
        except FileExistsError:
            return _read_key_file(path).public_id
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return _public_id(private.public_key())


def _decode_private(text: str, *, where: str | Path) -> SigningKey:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
        return SigningKey.from_raw(raw)
    except (binascii.Error, ValueError):
        # Never echo the value: it is a secret.
        raise InputError(
            "signing key is not a base64 32-byte Ed25519 private key", file=where
        ) from None


def _read_key_file(path: Path) -> SigningKey:
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read signing key: {exc}", file=path) from None
    return _decode_private(text, where=path)


def load_signing_key(store_root: Path) -> SigningKey | None:
    """The key from ``BUILDPRINT_SIGNING_KEY`` (base64 raw) if set, else the store's, else None."""
    env = os.environ.get("BUILDPRINT_SIGNING_KEY")
    if env:
        return _decode_private(env, where="BUILDPRINT_SIGNING_KEY")
    path = Path(store_root) / KEY_FILE
    if not path.exists():
        return None
    return _read_key_file(path)


def sign_record(record_bytes: bytes, key: SigningKey) -> bytes:
    """Wrap record bytes (a JSON object) in a canonical envelope signed by ``key``."""
    try:
        record = json.loads(record_bytes.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"cannot sign: record is not UTF-8 JSON: {exc}") from None
    if not isinstance(record, dict):
        raise StoreError("cannot sign: record is not a JSON object")
    payload = canonical_bytes(record)
    sig = key.private.sign(_CONTEXT + payload)
    return canonical_bytes(
        {
            "record": record,
            "signatures": [{"key": key.public_id, "sig": base64.b64encode(sig).decode("ascii")}],
        }
    )


def verify_envelope(data: bytes, trusted_keys: Iterable[str]) -> bytes:
    """Return the canonical record bytes if a trusted key signed them; else ``UntrustedRecord``."""
    try:
        envelope: Any = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise UntrustedRecord("malformed", "not UTF-8 JSON") from None
    if not isinstance(envelope, dict) or not isinstance(envelope.get("record"), dict):
        raise UntrustedRecord("malformed", "no record object")
    signatures = envelope.get("signatures")
    if signatures is None or signatures == []:
        raise UntrustedRecord("unsigned")
    if not isinstance(signatures, list):
        raise UntrustedRecord("malformed", "signatures is not a list")
    try:
        payload = canonical_bytes(envelope["record"])
    except TypeError:
        raise UntrustedRecord("malformed", "record has no canonical form") from None
    trusted = set(trusted_keys)
    seen_trusted = False
    for entry in signatures:
        if not isinstance(entry, dict):
            raise UntrustedRecord("malformed", "signature entry is not an object")
        key_id, sig_text = entry.get("key"), entry.get("sig")
        if not isinstance(key_id, str) or not isinstance(sig_text, str):
            raise UntrustedRecord("malformed", "signature entry lacks key or sig")
        if key_id not in trusted:
            continue
        seen_trusted = True
        try:
            public = parse_public_key(key_id)
            public.verify(base64.b64decode(sig_text, validate=True), _CONTEXT + payload)
        except (InputError, binascii.Error, InvalidSignature):
            continue
        return payload
    if seen_trusted:
        raise UntrustedRecord("bad signature")
    names = ", ".join(str(e.get("key")) for e in signatures if isinstance(e, dict))
    raise UntrustedRecord("unknown key", names)
