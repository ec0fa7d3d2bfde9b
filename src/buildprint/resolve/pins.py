"""Build requirements pinned to exact wheels: uv resolves, the index supplies files and sha256s."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags, sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from buildprint.errors import InputError
from buildprint.resolve.index import INDEX_SETTINGS_HINT, DistFile, PackageIndex, local_path
from buildprint.resolve.lockfile import PinnedWheel
from buildprint.urls import redact_url, scrub_credentials

__all__ = ["fetch_pinned", "resolve", "tags_for", "uv_index_args"]

#: uv settings that may pass through; every other UV_* variable (extra indexes, find-links,
#: constraints, resolution strategy...) would make the lock depend on the caller's shell.
_UV_ENV_ALLOWED = frozenset(
    {
        "UV_CACHE_DIR",
        "UV_NO_CACHE",
        "UV_OFFLINE",
        "UV_NATIVE_TLS",
        "UV_HTTP_TIMEOUT",
        "UV_CONCURRENT_DOWNLOADS",
        "UV_INSECURE_HOST",
        "UV_KEYRING_PROVIDER",
    }
)


def tags_for(python_version: str) -> list[Tag]:
    """Wheel tags, most preferred first: this interpreter's, or CPython ``X.Y``'s if it differs."""
    wanted = tuple(int(part) for part in python_version.split(".")[:2])
    if wanted == sys.version_info[:2]:
        return list(sys_tags())
    return [*cpython_tags(python_version=wanted), *compatible_tags(python_version=wanted)]


def uv_index_args(index: PackageIndex) -> list[str]:
    """The ``uv pip compile`` index options equivalent to ``index``'s sources. With extra
    indexes, every index is searched and the best version wins, as ``PackageIndex`` does
    (``--index-strategy unsafe-best-match``; docs/sources.md, "Several indexes")."""
    sources = index.uv_sources()
    urls = [where for kind, where in sources if kind == "index"]
    # uv ranks every --extra-index-url (earlier first) above --index-url: the last index is
    # given as --index-url, so that uv's order is PackageIndex's. A flat folder of files is
    # what uv calls find-links; with no index beside it, --no-index.
    args = ["--index-url", urls[-1]] if urls else ["--no-index"]
    for url in urls[:-1]:
        args += ["--extra-index-url", url]
    args += [a for kind, where in sources if kind == "flat" for a in ("--find-links", where)]
    if len(sources) > 1:
        args += ["--index-strategy", "unsafe-best-match"]
    for link in index.find_links:
        path = local_path(link)
        args += ["--find-links", str(path.resolve()) if path is not None else link]
    return args


def _uv_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") or k in _UV_ENV_ALLOWED}
    env["UV_NO_PROGRESS"] = "1"
    return env


def _parse_pins(text: str, file: str) -> list[tuple[str, Version]]:
    pins: list[tuple[str, Version]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            req = Requirement(line)
        except InvalidRequirement:
            raise InputError(f"unexpected uv output line {raw!r}", file=file, line=number) from None
        specs = list(req.specifier)
        if len(specs) != 1 or specs[0].operator != "==":
            raise InputError(f"uv did not pin {raw!r} to one version", file=file, line=number)
        pins.append((canonicalize_name(req.name), Version(specs[0].version)))
    return pins


def _declared(origin: str | Path | None) -> tuple[str, str | Path | None]:
    """How a message names where build requirements come from: a source tree's
    ``pyproject.toml`` lives in a scratch folder gone by the time the message is read, so it
    is named by the tree (``alpha-1.0/pyproject.toml``) in the text, with no file; any other
    ``origin`` is the file."""
    if isinstance(origin, Path) and origin.name == "pyproject.toml":
        return f" (declared by {origin.parent.name}/pyproject.toml)", None
    return "", origin


def resolve(
    requirements: Sequence[str],
    index: PackageIndex,
    python_version: str,
    tags: Sequence[Tag] | None = None,
    *,
    preferences: Sequence[PinnedWheel] = (),
    origin: str | Path | None = None,
) -> list[PinnedWheel]:
    """Resolve ``requirements`` to exact wheels (build dependencies install as wheels only).

    ``uv pip compile --only-binary :all:`` picks the versions for ``python_version``; each pin
    is then looked up on ``index`` with ``tags`` (default: :func:`tags_for`) so the result
    carries the wheel's filename, URL (credentials removed) and sha256. ``preferences`` (an
    earlier resolution) are kept where still allowed. A failure is an :class:`InputError` with
    uv's message, naming ``origin`` (the file declaring the requirements) when given.
    """
    if not requirements:
        return []
    for text in requirements:
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            declared, file = _declared(origin)
            raise InputError(
                f"invalid build requirement {text!r}{declared}: {exc}", file=file
            ) from None
    from uv import find_uv_bin

    chosen_tags = list(tags) if tags is not None else tags_for(python_version)
    with tempfile.TemporaryDirectory(prefix="buildprint-resolve-") as tmp:
        req_in = Path(tmp) / "build-requirements.in"
        req_in.write_text("".join(f"{r}\n" for r in requirements), encoding="utf-8")
        # uv reads an existing output file as preferences: earlier pins survive unless they
        # no longer satisfy the requirements.
        pinned_out = Path(tmp) / "build-requirements.txt"
        pinned_out.write_text("".join(f"{w.name}=={w.version}\n" for w in preferences))
        cmd = [
            find_uv_bin(),
            "pip",
            "compile",
            str(req_in),
            "--output-file",
            str(pinned_out),
            "--only-binary",
            ":all:",
            "--python-version",
            python_version,
            "--python",
            sys.executable,
            "--no-header",
            "--no-annotate",
            "--no-config",
            "--quiet",
            *uv_index_args(index),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_uv_env(), check=False)
        if proc.returncode != 0:
            message = scrub_credentials(
                proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
            )
            # A source tree's pyproject.toml lives in a scratch folder gone by the time the
            # message is read: name the package's tree instead, and the index's setting.
            declared, file = _declared(origin)
            line = None
            if file is None and declared:
                file, line = index.settings_file, index.settings_line
            raise InputError(
                f"cannot resolve build requirements {', '.join(requirements)}{declared} for "
                f"Python {python_version} from {index.describe()} (wheels only):\n{message}\n"
                f"({INDEX_SETTINGS_HINT})",
                file=file,
                line=line,
            )
        pins = _parse_pins(pinned_out.read_text(encoding="utf-8"), "uv pip compile output")

    wheels = []
    for name, version in pins:
        dist = index.find_wheel(name, version, chosen_tags)
        wheels.append(
            PinnedWheel(
                name=name,
                version=str(version),
                filename=dist.filename,
                url=redact_url(dist.url),
                sha256=index.sha256(dist),
            )
        )
    return sorted(wheels)


def fetch_pinned(pin: PinnedWheel, index: PackageIndex, dest_dir: Path | None = None) -> Path:
    """Get a locked wheel, verified against the lock's sha256 (the lock, not the index, decides).

    The file is looked up on ``index`` by filename (so a lock made elsewhere, or with
    credentials removed from its URLs, still installs); the recorded URL is the fallback.
    """
    offered = [f for f in index.files(pin.name) if f.filename == pin.filename]
    if offered:
        dist = replace(offered[0], sha256=pin.sha256)
    else:
        name, version, _build, tags = parse_wheel_filename(pin.filename)
        dist = DistFile(pin.filename, pin.url, pin.sha256, name, version, "wheel", tags=tags)
    return index.download(dist, dest_dir)
