"""The ``env`` component: variables handed to a build, secrets only as digests."""

from __future__ import annotations

import re
from collections.abc import Mapping

from buildprint.signature.canonical import CanonicalValue, digest_bytes

__all__ = ["env_value", "is_secret_name", "masked"]

_SECRET = re.compile(r"TOKEN|PASSWORD|PASSWD|SECRET|KEY|CREDENTIAL|AUTH|COOKIE|SESSION", re.I)


def is_secret_name(name: str) -> bool:
    """Whether a variable's name suggests its value must never be shown."""
    return bool(_SECRET.search(name))


def masked(name: str, value: str) -> dict[str, CanonicalValue]:
    """A value shown only by its digest. The name is mixed in so that equal values of two
    variables do not reveal that they are equal. A caller's variable that is not UTF-8 reaches
    Python with its bytes as surrogate escapes (PEP 383): those are digested as the bytes they
    stand for (the bytes the build is handed), so the digest is deterministic and equals
    that of valid UTF-8 text wherever the value is one."""
    text = f"buildprint-env\0{name}\0{value}"
    return {"sha256": digest_bytes(text.encode("utf-8", "surrogateescape"))}


def env_value(
    settings_env: Mapping[str, str],
    pass_through: Mapping[str, str | None],
) -> dict[str, CanonicalValue]:
    """Component value. Settings values appear in plain text unless their name looks secret;
    pass-through values (taken from the caller's environment) always appear as digests. A
    pass-through variable that is unset is recorded as ``null`` so that setting it later is a
    visible change."""
    value: dict[str, CanonicalValue] = {}
    for name in sorted(pass_through):
        given = pass_through[name]
        value[name] = None if given is None else masked(name, given)
    for name in sorted(settings_env):
        given = settings_env[name]
        value[name] = masked(name, given) if is_secret_name(name) else given
    return value
