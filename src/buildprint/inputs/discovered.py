"""Discovered inputs: the system files a build read, sorted from the rest of what it read,
their digests, and whether they still hold them (docs/discovered.md).

A build's own tree and its build environment are described by its signature; everything
else it read (``/usr/include/yaml.h``, ``libssl.so``, a ``.pc`` file, the compiler proper)
is *discovered*: recorded with its digest after the build, and checked before the build is
reused. :class:`SystemFiles` answers "what does this file hold now" by a stat, rehashing
only a file whose stat changed, so a no-op plan stays a stat per input.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from buildprint.errors import InputError
from buildprint.fsio import stat_key
from buildprint.inputs.files import file_digest
from buildprint.signature.canonical import CanonicalValue, digest_value

__all__ = [
    "BUILTIN_IGNORED",
    "MISSING",
    "DigestMemo",
    "ReadReport",
    "SystemFiles",
    "classify",
    "ignored_by",
    "variant_key",
]

#: What the programs of every build read for themselves, not for the build: the kernel's
#: views, the loader's cache, the data of the fixed ``C.UTF-8`` locale, the time zone every
#: interpreter loads at start (wheels take their times from ``SOURCE_DATE_EPOCH``) and the
#: OpenSSL configuration ``hashlib`` loads. Seen and listed by ``audit``, never checked.
BUILTIN_IGNORED = (
    "/proc/**",
    "/sys/**",
    "/dev/**",
    "/etc/ld.so.cache",
    "/etc/ld.so.preload",
    "/etc/locale.alias",
    "/usr/lib/locale/**",
    "/usr/share/locale/**",
    "/usr/lib/*/gconv/**",
    "/etc/localtime",
    "/usr/share/zoneinfo/**",
    "/etc/ssl/openssl.cnf",
    "/usr/lib/ssl/openssl.cnf",
)

#: The digest a recorded input has when it no longer exists (or cannot be read).
MISSING = "(missing)"


@functools.lru_cache(maxsize=256)
def _pattern(glob: str) -> re.Pattern[str]:
    """``**`` any number of folders, ``*`` and ``?`` within one name."""
    out = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(out))


def ignored_by(path: str, patterns: Iterable[str]) -> str | None:
    """The first of ``patterns`` that ``path`` matches (``None``: none does)."""
    return next((p for p in patterns if _pattern(p).fullmatch(path)), None)


class DigestMemo(Protocol):
    """Where :class:`SystemFiles` keeps ``path -> [stat, digest]`` (the store's memo)."""

    def get(self, key: str) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...

    def save(self) -> None: ...


class SystemFiles:
    """Current digests of absolute paths, memoized by stat in the store's memo (thread-safe)."""

    def __init__(self, memo: DigestMemo | None = None) -> None:
        self.memo = memo
        #: Digests checked during this run: a header a thousand builds read costs one stat.
        self._checked: dict[str, str] = {}

    def digest(self, path: str) -> str:
        """What ``path`` holds now: its SHA-256, or :data:`MISSING`."""
        state = stat_key(path)
        if state is None:
            return MISSING
        known = self.memo.get(path) if self.memo is not None else None
        if isinstance(known, list) and len(known) == 2 and known[0] == state:
            return str(known[1])
        try:
            digest = file_digest(Path(path))
        except InputError:
            return MISSING
        if self.memo is not None:
            self.memo.put(path, [state, digest])
        return digest

    def changed(
        self, recorded: Mapping[str, str], ignore: Sequence[str] = ()
    ) -> list[tuple[str, str, str]]:
        """``(path, recorded digest, digest now)`` for each recorded input that moved (those
        matching ``ignore`` aside), in path order. A path is looked at once per run (a plan
        is one moment); :meth:`digest`, which records a finished build's inputs, always
        looks again."""
        out = []
        for path in sorted(recorded):
            if ignore and ignored_by(path, ignore):
                continue
            now = self._checked.get(path)
            if now is None:
                now = self._checked[path] = self.digest(path)
            if now != recorded[path]:
                out.append((path, recorded[path], now))
        return out

    def save(self) -> None:
        if self.memo is not None:
            self.memo.save()


def variant_key(signature: str, paths: Iterable[str], files: SystemFiles) -> str:
    """The key a build stores under when the build first stored under ``signature`` read
    ``paths`` and they hold other content now: a digest of the signature and of what those
    paths hold. Two machines with the same system files compute the same key, so a variant
    is shared through a remote like any record (ccache keys its results the same way)."""
    return digest_value(
        {"variant-of": signature, "inputs": {p: files.digest(p) for p in sorted(paths)}}
    )


@dataclass(frozen=True)
class ReadReport:
    """What one build read, grouped (what ``audit`` prints). Paths are absolute except in
    ``source``, which is relative to the source tree."""

    source: tuple[str, ...] = ()
    environment: tuple[str, ...] = ()
    toolchain: tuple[str, ...] = ()
    discovered: Mapping[str, str] = field(default_factory=dict)
    loaded: tuple[str, ...] = ()
    ignored: Mapping[str, str] = field(default_factory=dict)  # path -> the pattern
    variables: Mapping[str, str] = field(default_factory=dict)  # name -> declared | set
    tracer: str = ""

    def to_json(self) -> dict[str, CanonicalValue]:
        return {
            "format": 1,
            "tracer": self.tracer,
            "source": list(self.source),
            "environment": list(self.environment),
            "toolchain": list(self.toolchain),
            "discovered": dict(self.discovered),
            "loaded": list(self.loaded),
            "ignored": dict(self.ignored),
            "variables": dict(self.variables),
        }

    @classmethod
    def from_json(cls, data: object) -> ReadReport:
        if not isinstance(data, dict) or data.get("format") != 1:
            raise ValueError("not a read report")
        return cls(
            source=tuple(data["source"]),
            environment=tuple(data["environment"]),
            toolchain=tuple(data["toolchain"]),
            discovered=dict(data["discovered"]),
            loaded=tuple(data["loaded"]),
            ignored=dict(data["ignored"]),
            variables=dict(data["variables"]),
            tracer=str(data["tracer"]),
        )


def _under(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


#: The files whose absence is an input: headers and libraries, looked for along search paths
#: (``-I``, ``-L``, ``PKG_CONFIG_PATH``) where one that appears would be found first.
_SEARCHED = re.compile(r"\.(h|hh|hpp|hxx|inc|pc|a|so(\.[0-9.]+)?)$")


def classify(
    read: Iterable[str],
    loaded: Iterable[str],
    *,
    absent: Iterable[str] = (),
    tree: str,
    environment: Sequence[str],
    toolchain: Iterable[str],
    ignore: Sequence[str],
    files: SystemFiles,
    variables: Mapping[str, str],
    tracer: str,
) -> ReadReport:
    """Sort the files a build read: its ``tree``, its build ``environment`` (the build
    virtualenv, the interpreter's own library and headers, its ``HOME`` and ``TMPDIR``), the
    ``toolchain`` binaries its signature identifies, what ``ignore`` (the built-in patterns,
    then the package's) sets aside, and the rest: discovered, digested now. Folders are not
    inputs (their listing is not seen); ``loaded`` shared objects are the code of the
    programs that ran, listed, not checked. A header or library looked for and ``absent``
    (outside the tree and environment) is discovered as :data:`MISSING`: if one appears
    there, it would be found before the one the build used."""
    tree = os.path.realpath(tree)
    roots = [os.path.realpath(r) for r in environment]
    tools = {os.path.realpath(t) for t in toolchain}
    source: list[str] = []
    env: list[str] = []
    known_tools: list[str] = []
    discovered: dict[str, str] = {}
    ignored: dict[str, str] = {}
    for path in sorted(set(read)):
        if os.path.isdir(path):
            continue
        if _under(path, [tree]):
            if os.path.isfile(path):  # not a folder the build removed since
                source.append(os.path.relpath(path, tree))
        elif _under(path, roots):
            env.append(path)
        elif path in tools:
            known_tools.append(path)
        elif (pattern := ignored_by(path, (*BUILTIN_IGNORED, *ignore))) is not None:
            ignored[path] = pattern
        else:
            discovered[path] = files.digest(path)
    for path in sorted(set(absent)):
        if (
            _SEARCHED.search(path)
            and not _under(path, [tree, *roots])
            and ignored_by(path, (*BUILTIN_IGNORED, *ignore)) is None
        ):
            discovered.setdefault(path, MISSING)  # must stay absent
    return ReadReport(
        source=tuple(source),
        environment=tuple(env),
        toolchain=tuple(known_tools),
        discovered=discovered,
        loaded=tuple(sorted(p for p in set(loaded) if not _under(p, roots))),
        ignored=ignored,
        variables=dict(variables),
        tracer=tracer,
    )
