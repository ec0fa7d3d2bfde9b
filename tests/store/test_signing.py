"""Ed25519 keys and record envelopes: generation, loading, signing, and every rejection reason."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from buildprint.errors import InputError
from buildprint.signature.canonical import canonical_bytes
from buildprint.store.signing import (
    KEY_FILE,
    UntrustedRecord,
    generate_key,
    load_signing_key,
    sign_record,
    verify_envelope,
)

RECORD = canonical_bytes({"format": "buildprint-record/1", "signature": "ab" * 32, "name": "x"})


def test_generate_key_writes_private_key_0600_and_returns_public_id(tmp_path: Path) -> None:
    public = generate_key(tmp_path)
    assert public.startswith("ed25519:")
    assert len(base64.b64decode(public.removeprefix("ed25519:"))) == 32
    key_file = tmp_path / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    loaded = load_signing_key(tmp_path)
    assert loaded is not None and loaded.public_id == public
    # The private key never shows up in the repr (it ends up in logs and tracebacks).
    assert key_file.read_text().strip() not in repr(loaded)


def test_generate_key_keeps_an_existing_key(tmp_path: Path) -> None:
    first = generate_key(tmp_path)
    assert generate_key(tmp_path) == first


def test_no_key_loads_as_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BUILDPRINT_SIGNING_KEY", raising=False)
    assert load_signing_key(tmp_path) is None


def test_environment_key_wins_over_store_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "other"
    other_public = generate_key(other)
    generate_key(tmp_path)
    monkeypatch.setenv("BUILDPRINT_SIGNING_KEY", (other / KEY_FILE).read_text().strip())
    loaded = load_signing_key(tmp_path)
    assert loaded is not None and loaded.public_id == other_public


def test_malformed_environment_key_is_input_error_without_echo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BUILDPRINT_SIGNING_KEY", "not-a-key-SECRETCANARY")
    with pytest.raises(InputError) as info:
        load_signing_key(tmp_path)
    assert "SECRETCANARY" not in str(info.value)
    assert info.value.file == "BUILDPRINT_SIGNING_KEY"


def test_signed_envelope_verifies_and_returns_the_canonical_record(tmp_path: Path) -> None:
    public = generate_key(tmp_path)
    key = load_signing_key(tmp_path)
    assert key is not None
    envelope = sign_record(RECORD, key)
    parsed = json.loads(envelope)
    assert parsed["signatures"][0]["key"] == public
    assert canonical_bytes(parsed) == envelope
    assert verify_envelope(envelope, [public]) == RECORD


def _signed(tmp_path: Path) -> tuple[bytes, str]:
    public = generate_key(tmp_path)
    key = load_signing_key(tmp_path)
    assert key is not None
    return sign_record(RECORD, key), public


def test_unknown_key_is_rejected(tmp_path: Path) -> None:
    envelope, _public = _signed(tmp_path / "a")
    stranger = generate_key(tmp_path / "b")
    with pytest.raises(UntrustedRecord) as info:
        verify_envelope(envelope, [stranger])
    assert info.value.reason == "unknown key"


def test_unsigned_record_is_rejected(tmp_path: Path) -> None:
    envelope, public = _signed(tmp_path)
    unsigned = json.loads(envelope)
    unsigned["signatures"] = []
    with pytest.raises(UntrustedRecord) as info:
        verify_envelope(canonical_bytes(unsigned), [public])
    assert info.value.reason == "unsigned"
    with pytest.raises(UntrustedRecord) as info:
        verify_envelope(RECORD, [public])  # a bare record, no envelope at all
    assert info.value.reason == "malformed"


def test_any_flipped_bit_in_the_record_is_a_bad_signature(tmp_path: Path) -> None:
    envelope, public = _signed(tmp_path)
    start = envelope.index(b'"name":"x"') + len(b'"name":"')
    tampered = envelope[:start] + b"y" + envelope[start + 1 :]
    with pytest.raises(UntrustedRecord) as info:
        verify_envelope(tampered, [public])
    assert info.value.reason == "bad signature"


def test_signature_from_another_record_does_not_transfer(tmp_path: Path) -> None:
    envelope, public = _signed(tmp_path)
    other = json.loads(envelope)
    other["record"]["signature"] = "cd" * 32
    with pytest.raises(UntrustedRecord) as info:
        verify_envelope(canonical_bytes(other), [public])
    assert info.value.reason == "bad signature"


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe",
        b"[]",
        b'{"record": 1}',
        b'{"record": {}, "signatures": "x"}',
        b'{"record": {}, "signatures": [{"key": 1}]}',
        b'{"record": {"f": 1.5}, "signatures": [{}]}',
    ],
)
def test_malformed_envelopes_are_rejected(data: bytes) -> None:
    with pytest.raises(UntrustedRecord) as info:
        verify_envelope(data, [])
    assert info.value.reason == "malformed"
