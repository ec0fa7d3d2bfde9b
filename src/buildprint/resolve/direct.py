"""PEP 508 direct references (``name @ URL``) as a package's source: which forms are honoured,
what they say, and git refs resolved to commits and checked out under the store."""

from __future__ import annotations

import configparser
import contextlib
import email.parser
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import tempfile
import threading
import tomllib
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.request import url2pathname

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

from buildprint.errors import InputError
from buildprint.fsio import can_sync_filesystem, fsync_dir, sync_filesystem
from buildprint.inputs.archive import ARCHIVE_SUFFIXES
from buildprint.project.project import LocatedRequirement
from buildprint.urls import redact_url, scrub_credentials

__all__ = [
    "SUPPORTED_FORMS",
    "DirectRef",
    "DirectReferenceError",
    "GitCheckouts",
    "Metadata",
    "archive_metadata",
    "check_direct_references",
    "parse_direct",
    "tree_metadata",
]

#: What a refusal lists as the forms that are honoured.
SUPPORTED_FORMS = (
    "'NAME @ https://…/NAME-VERSION.tar.gz#sha256=HEX', 'NAME @ file:///…' (an sdist or a "
    "folder) or 'NAME @ git+https://…@REF' / 'NAME @ git+file:///…@REF'"
)

_HEX = re.compile(r"[0-9a-f]+")
#: Full object ids: SHA-1 (40 hex digits) or SHA-256 (64) repositories.
_FULL_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: A git ref as it may be written after ``@``: a branch, tag, ``refs/…`` name or commit.
_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._/+-]*")
_HASH_NAMES = ("md5", "sha1", "sha224", "sha384", "sha512", "sha3_256", "blake2b")
_VCS = ("svn+", "hg+", "bzr+")
#: How long a git command may take (a first fetch of a big repository is slow).
LS_REMOTE_TIMEOUT = 120.0
FETCH_TIMEOUT = 1800.0


@dataclass(frozen=True)
class DirectRef:
    """A checked direct reference. ``url`` is what is fetched (credentials kept, fragment
    and, for git, the ``git+`` prefix and ``@REF`` removed); ``shown`` is the reference as
    written without credentials: the only form that is printed or recorded."""

    requirement: Requirement
    name: NormalizedName
    kind: Literal["archive", "file", "git"]  # archive: http(s); file: file:// file or folder
    url: str
    shown: str
    sha256: str | None = None
    ref: str | None = None  # git: the branch, tag or commit after '@'
    subdirectory: str | None = None

    @property
    def filename(self) -> str:
        """The last component of the URL's path (an sdist's file name, for archives)."""
        return unquote(urlsplit(self.url).path.rstrip("/").rsplit("/", 1)[-1])

    @property
    def path(self) -> Path:
        """The local path of a ``file://`` reference (or of a ``git+file://`` repository)."""
        return Path(url2pathname(unquote(urlsplit(self.url).path)))

    @property
    def transport(self) -> str:
        return urlsplit(self.url).scheme

    def error(self, message: str) -> InputError:
        """An input error at the requirement's file and line (or naming the argument)."""
        return _error(self.requirement, f"{self.name} @ {self.shown}", message)


class DirectReferenceError(InputError):
    """Bad input about a direct reference, at the requirement's file and line."""


def _error(requirement: Requirement, about: str, message: str) -> InputError:
    """An error about ``requirement`` (shown as ``about``, credentials removed): at its file
    and line, or naming the command-line argument."""
    if isinstance(requirement, LocatedRequirement):
        if requirement.file is None:
            return DirectReferenceError(f"requirement argument {about!r}: {message}")
        return DirectReferenceError(
            f"{about}: {message}", file=requirement.file, line=requirement.line
        )
    return DirectReferenceError(f"{about}: {message}")


def _where(requirement: Requirement) -> str:
    if isinstance(requirement, LocatedRequirement):
        if requirement.file is None:
            return "the command line"
        line = f":{requirement.line}" if requirement.line is not None else ""
        return f"{requirement.file}{line}"
    return "the requirements"


def _fragment(requirement: Requirement, text: str, fragment: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in fragment.split("&"):
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise _error(requirement, text, f"malformed URL fragment {item!r} (want KEY=VALUE)")
        if key in found:
            raise _error(requirement, text, f"'#{key}=' is given twice")
        found[key] = unquote(value)
    return found


def parse_direct(requirement: Requirement) -> DirectRef | None:
    """The direct reference of ``requirement`` (None when it has none), checked: a form that
    is not honoured is an input error at the requirement's file and line, never a silent
    fall-back to the index."""
    written = requirement.url
    if written is None:
        return None
    name = canonicalize_name(requirement.name)
    shown = redact_url(written)
    text = f"{name} @ {shown}"

    def refuse(message: str) -> InputError:
        return _error(requirement, text, message)

    try:
        parts = urlsplit(written)
        parts.port  # noqa: B018 - validates the port
    except ValueError as exc:
        raise refuse(f"malformed URL ({exc}); supported: {SUPPORTED_FORMS}") from None
    scheme = parts.scheme.lower()
    fragment = _fragment(requirement, text, parts.fragment) if parts.fragment else {}
    egg = fragment.pop("egg", None)
    if egg is not None and canonicalize_name(egg) != name:
        raise refuse(f"'#egg={egg}' names another package than {name}")
    sha256 = fragment.pop("sha256", None)
    subdirectory = fragment.pop("subdirectory", None)
    for key in fragment:
        if key in _HASH_NAMES:
            raise refuse(f"'#{key}=' is not supported: give the archive's '#sha256='")
        raise refuse(f"unknown URL fragment '#{key}='")
    if sha256 is not None:
        sha256 = sha256.lower()
        if len(sha256) != 64 or not _HEX.fullmatch(sha256):
            raise refuse("'#sha256=' must be 64 hex digits")
    if subdirectory is not None:
        sub = PurePosixPath(subdirectory)
        if sub.is_absolute() or ".." in sub.parts or "\\" in subdirectory:
            raise refuse("'#subdirectory=' must be a relative path inside the tree")
        subdirectory = sub.as_posix()
        if subdirectory == ".":
            subdirectory = None

    if scheme in ("https", "http"):
        if not parts.hostname:
            raise refuse("malformed URL: no host")
        archive = DirectRef(
            requirement,
            name,
            "archive",
            urlunsplit((scheme, parts.netloc, parts.path, parts.query, "")),
            shown,
            sha256,
        )
        if sha256 is None:
            raise refuse(
                f"an {scheme}:// reference needs the archive's digest: append "
                "'#sha256=<64 hex digits>' (the build signature must not depend on what a "
                "server sends today)"
            )
        if subdirectory is not None:
            raise refuse("'#subdirectory=' is only supported for git and folder references")
        _refuse_wheel(archive.filename, refuse)
        if not archive.filename.lower().endswith(ARCHIVE_SUFFIXES):
            raise refuse(
                f"the URL must name an sdist archive ({', '.join(ARCHIVE_SUFFIXES)}), "
                f"not {archive.filename or 'no file'!r}"
            )
        return archive
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise refuse("a file URL must be absolute and local: 'file:///PATH'")
        if parts.query:
            raise refuse("a file URL takes no query ('?…')")
        local = DirectRef(
            requirement,
            name,
            "file",
            urlunsplit(("file", "", parts.path, "", "")),
            shown,
            sha256,
            subdirectory=subdirectory,
        )
        _refuse_wheel(local.filename, refuse)
        return local
    if scheme.startswith("git+"):
        transport = scheme.removeprefix("git+")
        if transport not in ("https", "file"):
            raise refuse(
                f"git over {transport!r} is not supported; use git+https:// or git+file:///"
            )
        if transport == "https" and not parts.hostname:
            raise refuse("malformed URL: no host")
        if transport == "file" and (
            parts.netloc not in ("", "localhost") or not parts.path.startswith("/")
        ):
            raise refuse("a git+file URL must be absolute and local: 'git+file:///PATH@REF'")
        if sha256 is not None:
            raise refuse("'#sha256=' does not apply to a git reference (its commit pins it)")
        path, at, ref = parts.path.rpartition("@")
        if not at or not ref or not path:
            raise refuse(
                "a git reference must name a tag, branch or full commit after '@' "
                "('git+https://host/repo.git@v1.2'): without one the build is not reproducible"
            )
        if not _REF.fullmatch(ref) or ".." in ref or ref.endswith((".lock", "/", ".")):
            raise refuse(f"{ref!r} is not a valid git ref")
        return DirectRef(
            requirement,
            name,
            "git",
            urlunsplit((transport, parts.netloc, path, parts.query, "")),
            shown,
            ref=ref,
            subdirectory=subdirectory,
        )
    if scheme.startswith(_VCS):
        raise refuse(
            f"{scheme.split('+', 1)[0]} references are not supported (only git); supported: "
            f"{SUPPORTED_FORMS}"
        )
    if not scheme:
        raise refuse(f"not a URL; supported: {SUPPORTED_FORMS}")
    raise refuse(f"the URL scheme {scheme!r} is not supported; supported: {SUPPORTED_FORMS}")


def _refuse_wheel(filename: str, refuse: Callable[[str], InputError]) -> None:
    if filename.endswith(".whl"):
        raise refuse(
            f"{filename} is a wheel; buildprint builds from source: reference the sdist "
            "(.tar.gz or .zip) instead"
        )


def check_direct_references(requirements: Sequence[Requirement]) -> None:
    """Check every direct reference among ``requirements`` before anything is resolved, so a
    refused one leaves the store as it was; a package both given by a direct reference and
    required otherwise (another URL, or a plain requirement) is an error naming both."""
    seen: dict[NormalizedName, Requirement] = {}
    for requirement in requirements:
        parse_direct(requirement)
        name = canonicalize_name(requirement.name)
        other = seen.setdefault(name, requirement)
        differs = (other.url, str(other.specifier)) != (requirement.url, str(requirement.specifier))
        if other is not requirement and (other.url or requirement.url) and differs:
            raise _error(
                requirement,
                _text(requirement),
                f"{name} is required twice: also as {_text(other)!r} at {_where(other)}; "
                "require it once",
            )


def _text(requirement: Requirement) -> str:
    """The requirement as it may be printed (a URL without its credentials)."""
    if requirement.url is None:
        return str(requirement)
    return f"{canonicalize_name(requirement.name)} @ {redact_url(requirement.url)}"


# -- versions without running a backend ---------------------------------------------------


@dataclass(frozen=True)
class Metadata:
    """Name and version read from static metadata (None when not found), and where they
    were looked for, for the message when the version is missing."""

    name: str | None
    version: str | None
    looked: str


def _from_pyproject(data: bytes, origin: str) -> tuple[str | None, str | None, str]:
    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{origin}: cannot read pyproject.toml: {exc}") from None
    project = parsed.get("project")
    if not isinstance(project, dict):
        return None, None, "pyproject.toml has no [project] table"
    name = project.get("name") if isinstance(project.get("name"), str) else None
    dynamic = project.get("dynamic")
    if isinstance(dynamic, list) and "version" in dynamic:
        return name, None, "pyproject.toml declares its version dynamic"
    version = project.get("version")
    if isinstance(version, str):
        return name, version, ""
    return name, None, "pyproject.toml's [project] table has no version"


def _from_pkg_info(data: bytes) -> tuple[str | None, str | None]:
    headers = email.parser.BytesHeaderParser().parsebytes(data)
    return headers.get("Name"), headers.get("Version")


def _from_setup_cfg(data: bytes) -> tuple[str | None, str | None]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(data.decode("utf-8"))
    except (UnicodeDecodeError, configparser.Error):
        return None, None
    name = parser.get("metadata", "name", fallback=None)
    version = parser.get("metadata", "version", fallback=None)
    if version is not None and version.strip().startswith(("attr:", "file:")):
        version = None
    return name, version.strip() if version else None


def _metadata(read: Callable[[str], bytes | None], origin: str) -> Metadata:
    """Static metadata from ``read(relative name) -> bytes | None``: ``[project]`` of
    pyproject.toml (version not dynamic), else PKG-INFO, else setup.cfg ``[metadata]``."""
    notes: list[str] = []
    name: str | None = None
    data = read("pyproject.toml")
    if data is not None:
        name, version, why = _from_pyproject(data, origin)
        if version is not None:
            return Metadata(name, version, "")
        notes.append(why)
    else:
        notes.append("there is no pyproject.toml")
    for filename, parse in (("PKG-INFO", _from_pkg_info), ("setup.cfg", _from_setup_cfg)):
        data = read(filename)
        if data is None:
            notes.append(f"no {filename}")
            continue
        other, version = parse(data)
        name = name or other
        if version:
            return Metadata(name, version.strip(), "")
        notes.append(f"{filename} gives no static version")
    return Metadata(name, None, "; ".join(notes))


def tree_metadata(root: Path) -> Metadata:
    """Static name and version of the source tree at ``root`` (nothing is run)."""

    def read(relative: str) -> bytes | None:
        path = root / relative  # a link is not followed: it could point out of the tree
        return path.read_bytes() if path.is_file() and not path.is_symlink() else None

    return _metadata(read, str(root))


_MEMBER_LIMIT = 1 << 20


def archive_metadata(path: Path) -> Metadata:
    """Static name and version of an sdist archive (``tar.*`` or ``zip``), read from its
    top-level folder's pyproject.toml, PKG-INFO or setup.cfg without unpacking it."""
    members: dict[str, bytes] = {}
    wanted = ("pyproject.toml", "PKG-INFO", "setup.cfg")
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    relative = _top_level_file(info.filename, wanted)
                    if relative and not info.is_dir() and info.file_size <= _MEMBER_LIMIT:
                        members.setdefault(relative, archive.read(info))
        else:
            with tarfile.open(path) as tar:
                for member in tar:
                    relative = _top_level_file(member.name, wanted)
                    if relative and member.isfile() and member.size <= _MEMBER_LIMIT:
                        stream = tar.extractfile(member)
                        if stream is not None:
                            members.setdefault(relative, stream.read())
    except (OSError, tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"cannot read the archive: {exc}", file=path) from None
    return _metadata(members.get, str(path))


def _top_level_file(member: str, wanted: Iterable[str]) -> str | None:
    parts = PurePosixPath(member.lstrip("./")).parts
    if len(parts) == 2 and parts[1] in wanted:
        return parts[1]
    return None


# -- git ----------------------------------------------------------------------------------


class GitCheckouts:
    """git references resolved to commits and checked out under ``root``
    (``<store>/sources/git/<commit>/``), one folder per commit, written atomically (fetched
    and checked out in a temporary folder beside it, then renamed) and reused by commit.

    A ref that is not a full commit (a branch, a tag, ``HEAD``) is resolved with ``git
    ls-remote`` once per run (every plan follows the branch; within a run, plan and build see
    the same commit). git runs with no system or user configuration (``HOME`` is an empty
    folder), no prompts, only the transport the reference names, ``core.autocrlf=false`` and
    ``core.eol=lf``; the checkout holds the tree only (its ``.git`` is removed)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._commits: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def commit(self, ref: DirectRef) -> str:
        """The full commit ``ref`` names now (a full commit id is taken as it is, and
        checked when it is fetched)."""
        assert ref.ref is not None
        if _FULL_ID.fullmatch(ref.ref.lower()):
            return ref.ref.lower()
        key = (ref.url, ref.ref)
        with self._lock:
            found = self._commits.get(key)
        if found is None:
            found = self._ls_remote(ref)
            with self._lock:
                found = self._commits.setdefault(key, found)
        return found

    def _ls_remote(self, ref: DirectRef) -> str:
        assert ref.ref is not None
        out = self._git(ref, ["ls-remote", ref.url, ref.ref, f"{ref.ref}^{{}}"], None)
        ids: dict[str, str] = {}
        for line in out.splitlines():
            object_id, _, name = line.partition("\t")
            if object_id and name:
                ids[name.strip()] = object_id.strip().lower()
        name = ref.ref
        for candidate in (
            f"{name}^{{}}",
            name,
            f"refs/tags/{name}^{{}}",
            f"refs/tags/{name}",
            f"refs/heads/{name}",
        ):
            if candidate in ids:
                return ids[candidate]
        if _HEX.fullmatch(name) and len(name) < 40:
            raise ref.error(
                f"{name!r} is not a branch or tag of the repository; an abbreviated commit "
                "is not accepted: give the full commit id"
            )
        raise ref.error(f"the repository has no branch or tag {name!r}")

    def checkout(self, ref: DirectRef, commit: str) -> Path:
        """The tree of ``commit`` under :attr:`root` (fetched from ``ref`` the first time)."""
        final = self.root / commit
        if final.is_dir():
            return final
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{commit[:12]}-{secrets.token_hex(6)}"
        tmp.mkdir()  # with the mode a new folder gets (the umask)
        try:
            fmt = ["--object-format=sha256"] if len(commit) == 64 else []
            self._git(ref, ["init", "-q", "--template=", *fmt, str(tmp)], None)
            try:
                self._git(
                    ref, ["fetch", "-q", "--depth", "1", "--no-tags", "--", ref.url, commit], tmp
                )
            except InputError:
                # The server does not serve a commit by its id: fetch every branch and tag.
                self._git(
                    ref,
                    ["fetch", "-q", "--no-tags", "--", ref.url, "+refs/*:refs/buildprint/*"],
                    tmp,
                )
            try:
                found = self._git(
                    ref, ["rev-parse", "--verify", "-q", f"{commit}^{{commit}}"], tmp
                ).strip()
            except InputError:
                found = ""
            if found != commit:
                raise ref.error(f"the repository has no commit {commit}")
            self._git(ref, ["checkout", "-q", "--detach", commit], tmp)
            shutil.rmtree(tmp / ".git")
            if can_sync_filesystem():
                with contextlib.suppress(OSError):  # durability only: the rename is atomic
                    sync_filesystem(tmp)
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another run put it there first
            fsync_dir(self.root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    def _git(self, ref: DirectRef, args: list[str], cwd: Path | None) -> str:
        """Run ``git ARGS`` (in repository ``cwd``) isolated from any configuration; its
        output, or an input error about ``ref`` carrying git's message (credentials
        removed)."""
        with tempfile.TemporaryDirectory(prefix="buildprint-git-home-") as home:
            env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
            env.update(
                HOME=home,
                XDG_CONFIG_HOME=home,
                GIT_CONFIG_NOSYSTEM="1",
                GIT_CONFIG_GLOBAL=os.devnull,
                GIT_TERMINAL_PROMPT="0",
                GIT_ASKPASS="",
                SSH_ASKPASS="",
                GIT_ALLOW_PROTOCOL=ref.transport,
                LC_ALL="C",
            )
            command = [
                "git",
                "-c",
                "core.autocrlf=false",
                "-c",
                "core.eol=lf",
                "-c",
                "core.symlinks=true",
                "-c",
                "advice.detachedHead=false",
                "-c",
                "credential.helper=",
                *(["-C", str(cwd)] if cwd is not None else []),
                *args,
            ]
            timeout = LS_REMOTE_TIMEOUT if args[0] == "ls-remote" else FETCH_TIMEOUT
            try:
                done = subprocess.run(
                    command,
                    cwd=cwd or home,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                )
            except FileNotFoundError:
                raise ref.error("git is not installed (it is needed for git references)") from None
            except subprocess.TimeoutExpired:
                raise ref.error(f"git {args[0]} took more than {timeout:.0f} s") from None
        if done.returncode != 0:
            message = scrub_credentials(done.stderr.strip())
            message = "; ".join(line for line in message.splitlines()[-5:] if line.strip())
            raise ref.error(f"git {args[0]} failed: {message or f'exit {done.returncode}'}")
        return done.stdout
