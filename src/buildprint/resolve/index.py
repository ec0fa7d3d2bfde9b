"""Package index client: find, pick and download sdists and wheels from indexes and folders."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit
from urllib.request import url2pathname

import httpx
from packaging.tags import Tag
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from buildprint.errors import InputError
from buildprint.fsio import copy_atomic, fsync_dir, new_temp_file
from buildprint.urls import redact_url, scrub_credentials

__all__ = [
    "DEFAULT_INDEX_URL",
    "INDEX_SETTINGS_HINT",
    "DistFile",
    "PackageIndex",
    "local_path",
    "location_problem",
    "newest_first",
]

#: The public index, used when a project sets no ``index-url``.
DEFAULT_INDEX_URL = "https://pypi.org/simple"

#: Where a user changes the indexes; every "not found"/"unreachable" message names it.
INDEX_SETTINGS_HINT = (
    "set `index-url` / `extra-index-url` / `find-links` under [project] in buildprint.toml"
)

_PEP691_JSON = "application/vnd.pypi.simple.v1+json"
_ACCEPT = f"{_PEP691_JSON}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DistFile:
    """One distribution file an index offers: where it is and what it claims to be."""

    filename: str
    url: str
    sha256: str | None
    name: NormalizedName
    version: Version
    kind: Literal["sdist", "wheel"]
    requires_python: str | None = None
    yanked: bool = False
    #: Wheel tags parsed from the filename (empty for sdists).
    tags: frozenset[Tag] = field(default_factory=frozenset, compare=False)

    @property
    def is_local(self) -> bool:
        """True when the file is on this machine (``file://`` URL), so it is used in place."""
        return urlsplit(self.url).scheme == "file"

    @property
    def local_path(self) -> Path:
        """The file's path on this machine (only for :attr:`is_local` files)."""
        return Path(url2pathname(unquote(urlsplit(self.url).path)))


def _parse_filename(
    filename: str,
    url: str,
    sha256: str | None,
    requires_python: str | None,
    yanked: bool,
) -> DistFile | None:
    """Build a :class:`DistFile` from an index entry, or None if the name is no sdist/wheel."""
    try:
        if filename.endswith(".whl"):
            name, version, _build, tags = parse_wheel_filename(filename)
            return DistFile(
                filename, url, sha256, name, version, "wheel", requires_python, yanked, tags
            )
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            return DistFile(filename, url, sha256, name, version, "sdist", requires_python, yanked)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        # Indexes carry odd legacy files (eggs, typos); they are simply not candidates.
        return None
    return None


def _split_hash(url: str) -> tuple[str, str | None]:
    """Split a PEP 503 link into its URL and the ``#sha256=`` fragment, if any."""
    parts = urlsplit(url)
    sha256 = None
    if parts.fragment:
        algo, _, value = parts.fragment.partition("=")
        if algo == "sha256" and value:
            sha256 = value.lower()
    return urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, "")), sha256


class _LinkParser(HTMLParser):
    """Collect ``<a href>`` links with their PEP 503/592 data attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str, dict[str, str | None]]] = []
        self._current: tuple[str, dict[str, str | None]] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            values = dict(attrs)
            href = values.get("href")
            if href:
                self._current = (href, values)
                self._text = []

    def handle_data(self, data: str) -> None:
        if self._current is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._current is not None:
            href, values = self._current
            self.links.append((href, "".join(self._text).strip(), values))
            self._current = None


def _files_from_html(html: str, base_url: str) -> list[DistFile]:
    parser = _LinkParser()
    parser.feed(html)
    parser.close()
    out: list[DistFile] = []
    for href, _text, attrs in parser.links:
        url, sha256 = _split_hash(urljoin(base_url, href))
        filename = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
        dist = _parse_filename(
            filename, url, sha256, attrs.get("data-requires-python"), "data-yanked" in attrs
        )
        if dist is not None:
            out.append(dist)
    return out


def _files_from_json(data: Any, base_url: str, where: str) -> list[DistFile]:
    entries = data.get("files") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InputError("index answer is not a PEP 691 project page (no `files` list)", file=where)
    out: list[DistFile] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        filename, url = entry.get("filename"), entry.get("url")
        if not isinstance(filename, str) or not isinstance(url, str):
            continue
        hashes = entry.get("hashes")
        sha256 = hashes.get("sha256") if isinstance(hashes, dict) else None
        requires_python = entry.get("requires-python")
        yanked = entry.get("yanked", False)
        dist = _parse_filename(
            filename,
            urljoin(base_url, url),
            sha256.lower() if isinstance(sha256, str) else None,
            requires_python if isinstance(requires_python, str) else None,
            bool(yanked),
        )
        if dist is not None:
            out.append(dist)
    return out


def _files_in_folder(folder: Path, name: NormalizedName | None) -> list[DistFile]:
    """A flat folder of files; hashes are unknown until the file is read."""
    out: list[DistFile] = []
    try:
        entries = sorted(folder.iterdir())
    except FileNotFoundError:
        return out
    for path in entries:
        if not path.is_file():
            continue
        dist = _parse_filename(path.name, path.resolve().as_uri(), None, None, False)
        if dist is not None and (name is None or dist.name == name):
            out.append(dist)
    return out


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def local_path(location: str) -> Path | None:
    """A ``file://`` URL or a plain path as a Path; None for remote URLs."""
    parts = urlsplit(location)
    if parts.scheme == "file":
        return Path(url2pathname(unquote(parts.path)))
    if parts.scheme in ("http", "https"):
        return None
    return Path(location).expanduser()


def location_problem(
    location: str, *, kind: str = "index-url", written: str | None = None
) -> str | None:
    """What is wrong with an index or find-links ``location`` before anything is asked of it
    (None: nothing): an ``http(s)`` URL needs a host and no spaces; a ``file://`` URL or a
    path must exist (a folder, for an index); other schemes are not indexes. ``written``:
    the location as the user wrote it (a relative folder), for the message."""
    shown = scrub_credentials(written or location)
    if not location.strip():
        return f"{kind} is empty"
    parts = urlsplit(location)
    has_scheme = "://" in location or (
        len(parts.scheme) > 1 and location[len(parts.scheme) :][:1] == ":"
    )
    if has_scheme and parts.scheme not in ("http", "https", "file"):
        return f"{kind} {shown!r} is not an index: give an http(s):// or file:// URL, or a folder"
    if parts.scheme in ("http", "https"):
        if not parts.hostname or any(c.isspace() for c in location):
            return f"{kind} {shown!r} is not a valid URL (no host, or spaces in it)"
        return None
    path = local_path(location)
    assert path is not None
    if not path.exists():
        return f"{kind} {shown!r}: no such folder ({path})"
    if kind in ("index-url", "extra-index-url") and not path.is_dir():
        return f"{kind} {shown!r}: {path} is not a folder"
    return None


#: How many versions a "not found" message lists (the newest); the count says the rest.
_LISTED = 5


def newest_first(offered: Iterable[str | Version]) -> str:
    """``2.3.1, 2.3.0, 2.2.9 … (14 versions)``: versions newest first, or file names sorted."""
    unique = set(offered)
    versions = sorted((v for v in unique if isinstance(v, Version)), reverse=True)
    names = [*map(str, versions), *sorted(str(v) for v in unique if not isinstance(v, Version))]
    if len(names) <= _LISTED:
        return ", ".join(names)
    noun = "versions" if versions else "files"
    return f"{', '.join(names[:_LISTED])} … ({len(names)} {noun})"


def _is_tree(root: Path | None) -> bool:
    """True when local index folder ``root`` is a PEP 503 tree rather than a flat folder of
    files (False for an http(s) index: ``root`` None)."""
    if root is None:
        return False
    if (root / "index.html").is_file():
        return True
    try:
        return any((child / "index.html").is_file() for child in root.iterdir() if child.is_dir())
    except OSError:
        return False


def _mismatch(f: DistFile, actual: str) -> InputError:
    return InputError(
        f"sha256 mismatch for {f.filename}: expected {f.sha256} (published by the index "
        f"or pinned in the lock), the file has {actual}; refusing to use it",
        file=redact_url(f.url),
    )


class PackageIndex:
    """Where sources and build dependencies come from: an index, any ``extra_index_urls``
    and any ``find-links``.

    ``index_url`` may be an ``http(s)`` simple index (PEP 691 JSON preferred, PEP 503 HTML
    accepted), a ``file://`` URL or a plain folder (a PEP 503 tree ``<name>/index.html`` or a
    flat folder of files). ``None`` means the public index. ``extra_index_urls`` are more
    indexes of the same kinds. ``find_links`` are folders or URLs of flat HTML file lists.

    All of them are one pool, as pip reads them: a package's files are those every index and
    location offers (:meth:`files`), and the best version among them wins wherever it is
    published. A file name offered by several is taken from the first that offers it:
    ``index_url``, then the extra indexes in order, then the find-links. ``uv pip compile``
    is given the same pool (``--index-strategy unsafe-best-match``, :meth:`uv_sources`).

    Downloads are verified against the published sha256 and kept content-addressed under
    ``cache_dir``.
    """

    def __init__(
        self,
        index_url: str | None,
        find_links: Sequence[str] = (),
        cache_dir: Path | None = None,
        *,
        extra_index_urls: Sequence[str] = (),
        timeout: float = 60.0,
        settings_file: str | Path | None = None,
        settings_line: int | None = None,
    ) -> None:
        self.index_url = (index_url or DEFAULT_INDEX_URL).rstrip("/")
        main = self.index_url
        self.extra_index_urls = tuple(
            dict.fromkeys(u.rstrip("/") for u in extra_index_urls if u.rstrip("/") != main)
        )
        #: Where ``index_url`` was set (``buildprint.toml`` and line), for messages about
        #: the index itself; None when it is the default or a command-line option.
        self.settings_file = str(settings_file) if settings_file is not None else None
        self.settings_line = settings_line
        self.find_links = tuple(find_links)
        self.cache_dir = cache_dir
        self._timeout = timeout
        self._client: httpx.Client | None = None
        self._client_lock = threading.Lock()
        self._pages: dict[NormalizedName, list[DistFile]] = {}
        self._flat_pages: dict[str, list[DistFile]] = {}

    # -- plumbing ---------------------------------------------------------------------------

    def __enter__(self) -> PackageIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool (the index stays usable; a new pool opens on demand)."""
        with self._client_lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    @property
    def http(self) -> httpx.Client:
        """The shared HTTP client (created on first use)."""
        with self._client_lock:
            if self._client is None:
                self._client = httpx.Client(
                    follow_redirects=True,
                    timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 15.0)),
                    headers={"User-Agent": "buildprint"},
                )
            return self._client

    def describe(self) -> str:
        """The configured sources, credentials removed, for messages."""
        where = [f"index-url {redact_url(self.index_url)}"]
        where += [f"extra-index-url {redact_url(url)}" for url in self.extra_index_urls]
        where += [f"find-links {redact_url(link)}" for link in self.find_links]
        return ", ".join(where)

    @property
    def key(self) -> str:
        """The indexes, as memo keys name what a choice was made from (the index URL alone
        when there is no extra index, as before there could be)."""
        return " ".join((self.index_url, *self.extra_index_urls))

    @property
    def index_path(self) -> Path | None:
        """The index as a local folder, or None when it is an http(s) URL."""
        return local_path(self.index_url)

    @property
    def extra_index_paths(self) -> list[Path]:
        """The extra indexes that are local folders."""
        return [path for url in self.extra_index_urls if (path := local_path(url)) is not None]

    def index_is_tree(self) -> bool:
        """True when a local index folder is a PEP 503 tree rather than a flat folder of files."""
        return _is_tree(self.index_path)

    def uv_sources(self) -> list[tuple[Literal["index", "flat"], str]]:
        """The indexes in precedence order as uv takes them: ``("index", URL)`` for an
        http(s) index or a local PEP 503 tree (its ``file://`` URL), ``("flat", folder)``
        for a flat folder of files (what uv calls find-links). The find-links are not
        included."""
        found: list[tuple[Literal["index", "flat"], str]] = []
        for url in (self.index_url, *self.extra_index_urls):
            root = local_path(url)
            if root is None:
                found.append(("index", url))
            elif _is_tree(root):
                found.append(("index", root.resolve().as_uri()))
            elif (root / "simple").is_dir():
                found.append(("index", (root / "simple").resolve().as_uri()))
            else:
                found.append(("flat", str(root.resolve())))
        return found

    def _get(self, url: str, accept: str) -> httpx.Response | None:
        """GET ``url``; None on 404 (the package is not there), InputError on other failures."""
        try:
            response = self.http.get(url, headers={"Accept": accept})
        except httpx.HTTPError as exc:
            raise InputError(
                f"cannot reach the package index: {type(exc).__name__}: "
                f"{scrub_credentials(str(exc))} "
                f"({INDEX_SETTINGS_HINT})",
                file=redact_url(url),
            ) from None
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise InputError(
                f"package index answered HTTP {response.status_code} ({INDEX_SETTINGS_HINT})",
                file=redact_url(url),
            )
        return response

    # -- listing ----------------------------------------------------------------------------

    def _index_files(self, index_url: str, name: NormalizedName) -> list[DistFile]:
        root = local_path(index_url)
        if root is None:
            url = f"{index_url}/{name}/"
            response = self._get(url, _ACCEPT)
            if response is None:
                return []
            base = str(response.url)
            ctype = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype == _PEP691_JSON or ctype.endswith("+json") or ctype == "application/json":
                try:
                    data = response.json()
                except ValueError:
                    raise InputError(
                        "index sent invalid JSON for a PEP 691 page", file=redact_url(url)
                    ) from None
                return _files_from_json(data, base, redact_url(url))
            return _files_from_html(response.text, base)
        if not root.is_dir():
            raise InputError(
                f"the package index folder does not exist ({INDEX_SETTINGS_HINT})", file=root
            )
        # A PEP 503 tree: <root>/<name>/index.html, or a folder per project without index.html.
        for project_dir in (root / name, root / "simple" / name):
            page = project_dir / "index.html"
            if page.is_file():
                return _files_from_html(
                    page.read_text(encoding="utf-8", errors="replace"), page.resolve().as_uri()
                )
            if project_dir.is_dir():
                return _files_in_folder(project_dir, name)
        return _files_in_folder(root, name)

    def _find_links_files(self, link: str) -> list[DistFile]:
        cached = self._flat_pages.get(link)
        if cached is not None:
            return cached
        path = local_path(link)
        if path is not None and not path.exists():
            raise InputError(
                f"the find-links location does not exist ({INDEX_SETTINGS_HINT})", file=path
            )
        if path is None:
            response = self._get(link, "text/html")
            files = [] if response is None else _files_from_html(response.text, str(response.url))
        elif path.is_file():
            dist = _parse_filename(path.name, path.resolve().as_uri(), None, None, False)
            files = [] if dist is None else [dist]
        else:
            files = _files_in_folder(path, None)
        self._flat_pages[link] = files
        return files

    def files(self, name: str) -> list[DistFile]:
        """Every sdist and wheel of ``name`` the indexes and find-links offer, all of them
        (a file name offered twice: the first seen wins, in the order of the class doc)."""
        key = canonicalize_name(name)
        cached = self._pages.get(key)
        if cached is not None:
            return list(cached)
        found: dict[str, DistFile] = {}
        for index_url in (self.index_url, *self.extra_index_urls):
            for dist in self._index_files(index_url, key):
                found.setdefault(dist.filename, dist)
        for link in self.find_links:
            for dist in self._find_links_files(link):
                if dist.name == key:
                    found.setdefault(dist.filename, dist)
        result = list(found.values())
        self._pages[key] = result
        return list(result)

    def versions(self, name: str) -> list[Version]:
        """Versions of ``name`` on offer, ascending; versions with only yanked files left out."""
        return sorted({f.version for f in self.files(name) if not f.yanked})

    def sdist_versions(self, name: str) -> list[Version]:
        """Versions of ``name`` with an sdist that is not yanked, ascending."""
        return sorted({f.version for f in self.files(name) if f.kind == "sdist" and not f.yanked})

    def _not_found(
        self, name: str, what: str, offered: Iterable[str | Version], none: str = ""
    ) -> InputError:
        listed = newest_first(offered)
        seen = f"; offered: {listed}" if listed else f"; {none or 'the index has no files for it'}"
        return InputError(
            f"no {what} for package {name!r} in {self.describe()}{seen} ({INDEX_SETTINGS_HINT})",
            file=redact_url(self.index_url),
        )

    def find_sdist(self, name: str, version: str | Version) -> DistFile:
        """The sdist of ``name`` at ``version``: non-yanked first, ``.tar.gz`` before ``.zip``."""
        wanted = Version(str(version))
        files = self.files(name)
        candidates = [f for f in files if f.kind == "sdist" and f.version == wanted]
        if not candidates:
            offered = [f.version for f in files if f.kind == "sdist"]
            wheels = [f.version for f in files if f.kind == "wheel"]
            none = f"the index offers only wheels of it ({newest_first(wheels)})" if wheels else ""
            raise self._not_found(name, f"sdist of version {wanted}", offered, none)
        candidates.sort(key=lambda f: (f.yanked, not f.filename.endswith(".tar.gz"), f.filename))
        return candidates[0]

    def find_wheel(self, name: str, version: str | Version, tags: Iterable[Tag]) -> DistFile:
        """The best wheel of ``name`` at ``version`` for ``tags`` (ordered most preferred first)."""
        wanted = Version(str(version))
        rank: dict[Tag, int] = {}
        for position, tag in enumerate(tags):
            rank.setdefault(tag, position)
        files = self.files(name)
        wheels = [f for f in files if f.kind == "wheel" and f.version == wanted]
        best: tuple[tuple[bool, int, str], DistFile] | None = None
        for wheel in wheels:
            positions = [rank[t] for t in wheel.tags if t in rank]
            if not positions:
                continue
            key = (wheel.yanked, min(positions), wheel.filename)
            if best is None or key < best[0]:
                best = (key, wheel)
        if best is None:
            offered: list[str | Version] = [f.filename for f in wheels]
            offered = offered or [f.version for f in files if f.kind == "wheel"]
            raise self._not_found(
                name, f"wheel of version {wanted} compatible with this interpreter", offered
            )
        return best[1]

    # -- downloading ------------------------------------------------------------------------

    def _cache_path(self, f: DistFile) -> Path | None:
        if self.cache_dir is None:
            return None
        if f.sha256 is not None:
            key = f.sha256
        else:
            # No published digest: files on an index are immutable per URL, so key by the URL
            # (credentials removed so two users with different tokens share the entry).
            key = "url-" + hashlib.sha256(redact_url(f.url).encode()).hexdigest()
        return self.cache_dir / key[:2] / key / f.filename

    def sha256(self, f: DistFile) -> str:
        """The file's sha256: the published one, or computed from the (downloaded) file."""
        if f.sha256 is not None:
            return f.sha256
        return _sha256_file(self.download(f))

    def download(self, f: DistFile, dest_dir: Path | None = None) -> Path:
        """Fetch ``f`` and verify its published sha256; return where it is.

        Local files are used in place (copied only when ``dest_dir`` is given). Remote files
        go through the content-addressed cache under ``cache_dir`` (a second call is a stat)
        and, with ``dest_dir``, land there as ``dest_dir/<filename>``. On a digest mismatch
        nothing is left at the destination and :class:`InputError` names both digests.
        """
        if f.is_local:
            source = f.local_path
            if not source.is_file():
                raise InputError(
                    f"{f.filename} is listed by the index but missing on disk "
                    f"({INDEX_SETTINGS_HINT})",
                    file=source,
                )
            if f.sha256 is not None:
                actual = _sha256_file(source)
                if actual != f.sha256:
                    raise _mismatch(f, actual)
            if dest_dir is None:
                return source
            return self._place(source, dest_dir / f.filename)

        cached = self._cache_path(f)
        if cached is not None and cached.is_file():
            return cached if dest_dir is None else self._place(cached, dest_dir / f.filename)
        if cached is not None:
            target = cached
        elif dest_dir is not None:
            target = dest_dir / f.filename
        else:
            target = Path(tempfile.mkdtemp(prefix="buildprint-download-")) / f.filename
        self._fetch(f, target)
        if dest_dir is not None and target != dest_dir / f.filename:
            return self._place(target, dest_dir / f.filename)
        return target

    def _place(self, source: Path, target: Path) -> Path:
        """Put a copy of ``source`` at ``target`` atomically (hard link when the FS allows)."""
        if target.exists() and target.resolve() == source.resolve():
            return target
        copy_atomic(source, target, link=True)
        return target

    def _fetch(self, f: DistFile, target: Path) -> None:
        """Stream ``f`` into a temp file beside ``target``, verify, then rename into place."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = new_temp_file(target.parent, target.name, ".part")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    with self.http.stream("GET", f.url) as response:
                        if response.status_code >= 400:
                            raise InputError(
                                f"cannot download {f.filename}: HTTP {response.status_code} "
                                f"({INDEX_SETTINGS_HINT})",
                                file=redact_url(f.url),
                            )
                        for chunk in response.iter_bytes(_CHUNK):
                            digest.update(chunk)
                            out.write(chunk)
                except httpx.HTTPError as exc:
                    raise InputError(
                        f"cannot download {f.filename}: {type(exc).__name__}: "
                        f"{scrub_credentials(str(exc))} "
                        f"({INDEX_SETTINGS_HINT})",
                        file=redact_url(f.url),
                    ) from None
                out.flush()
                os.fsync(out.fileno())
            actual = digest.hexdigest()
            if f.sha256 is not None and actual != f.sha256:
                raise _mismatch(f, actual)
            os.replace(tmp, target)
            fsync_dir(target.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
