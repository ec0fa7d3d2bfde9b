"""Real distribution files and real index servers for the index and lock tests."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import tarfile
import threading
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

__all__ = [
    "IndexServer",
    "make_sdist",
    "make_wheel",
    "serve_index",
    "sha256_of",
    "write_pep503_tree",
]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record_line(arcname: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{arcname},sha256={digest},{len(data)}"


def make_wheel(
    folder: Path,
    name: str,
    version: str,
    requires: Sequence[str] = (),
    tag: str = "py3-none-any",
    requires_python: str | None = None,
) -> Path:
    """Write a small valid wheel (METADATA, WHEEL, RECORD, one module) and return its path."""
    dist = name.replace("-", "_")
    dist_info = f"{dist}-{version}.dist-info"
    metadata = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        *(f"Requires-Dist: {req}" for req in requires),
    ]
    if requires_python:
        metadata.append(f"Requires-Python: {requires_python}")
    members = {
        f"{dist}/__init__.py": f"VERSION = {version!r}\n".encode(),
        f"{dist_info}/METADATA": ("\n".join(metadata) + "\n").encode(),
        f"{dist_info}/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: buildprint-tests\nRoot-Is-Purelib: true\nTag: {tag}\n"
        ).encode(),
    }
    record = [_record_line(arc, data) for arc, data in members.items()]
    record.append(f"{dist_info}/RECORD,,")
    members[f"{dist_info}/RECORD"] = ("\n".join(record) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for arcname, data in members.items():
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            zf.writestr(info, data)
    parse_wheel_filename(path.name)  # the fixture itself must produce a valid name
    return path


def make_sdist(folder: Path, name: str, version: str, ext: str = ".tar.gz") -> Path:
    """Write a small sdist (PKG-INFO, pyproject.toml, one module) as .tar.gz or .zip."""
    dist = name.replace("-", "_")
    root = f"{dist}-{version}"
    members = {
        f"{root}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{root}/pyproject.toml": (
            '[build-system]\nrequires = ["setuptools>=68"]\n'
            'build-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
        ).encode(),
        f"{root}/{dist}/__init__.py": b"",
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{root}{ext}"
    if ext == ".zip":
        with zipfile.ZipFile(path, "w") as zf:
            for arcname, data in members.items():
                zf.writestr(arcname, data)
    else:
        with tarfile.open(path, "w:gz") as tf:
            for arcname, data in members.items():
                info = tarfile.TarInfo(arcname)
                info.size = len(data)
                info.mtime = 0
                tf.addfile(info, io.BytesIO(data))
    parse_sdist_filename(path.name)
    return path


def _project_of(filename: str) -> str:
    if filename.endswith(".whl"):
        return parse_wheel_filename(filename)[0]
    return parse_sdist_filename(filename)[0]


def write_pep503_tree(root: Path, files: Sequence[Path], with_hashes: bool = True) -> Path:
    """Write ``root/simple/<name>/index.html`` pages linking to ``files``; return ``simple/``."""
    simple = root / "simple"
    by_project: dict[str, list[Path]] = {}
    for path in files:
        by_project.setdefault(_project_of(path.name), []).append(path)
    for project, paths in by_project.items():
        page = simple / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        links = []
        for path in paths:
            href = path.resolve().as_uri()
            if with_hashes:
                href += f"#sha256={sha256_of(path)}"
            links.append(f'<a href="{html.escape(href)}">{html.escape(path.name)}</a><br/>')
        page.write_text(
            "<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n",
            encoding="utf-8",
        )
    (simple / "index.html").write_text(
        "".join(f'<a href="{p}/">{p}</a>\n' for p in sorted(by_project)), encoding="utf-8"
    )
    return simple


@dataclass
class IndexServer:
    """A real simple index on 127.0.0.1 serving ``files`` as PEP 691 JSON or PEP 503 HTML."""

    files: dict[str, bytes]
    mode: str = "json"  # "json" | "html"
    #: filename -> the sha256 the index claims (to simulate a tampered file)
    published: dict[str, str] = field(default_factory=dict)
    yanked: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    #: content type of every project page served, in order
    page_types: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/simple"

    def hits(self, prefix: str) -> int:
        return sum(
            1
            for method, path, _auth in self.requests
            if method == "GET" and path.startswith(prefix)
        )

    def claimed(self, filename: str) -> str:
        return self.published.get(filename) or hashlib.sha256(self.files[filename]).hexdigest()

    def project_page(self, project: str, want_json: bool) -> tuple[bytes, str]:
        names = sorted(f for f in self.files if _project_of(f) == project)
        if want_json:
            body = {
                "meta": {"api-version": "1.1"},
                "name": project,
                "files": [
                    {
                        "filename": f,
                        "url": f"../../files/{f}",
                        "hashes": {"sha256": self.claimed(f)},
                        "requires-python": ">=3.8",
                        "yanked": "broken" if f in self.yanked else False,
                    }
                    for f in names
                ],
            }
            return json.dumps(body).encode(), "application/vnd.pypi.simple.v1+json"
        links = "".join(
            f'<a href="../../files/{f}#sha256={self.claimed(f)}" '
            f'data-requires-python="&gt;=3.8"{" data-yanked" if f in self.yanked else ""}>{f}</a>\n'
            for f in names
        )
        return f"<html><body>{links}</body></html>".encode(), "text/html"


def _handler(server: IndexServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.respond("GET")

        def do_HEAD(self) -> None:
            # uv probes wheels with HEAD (range support) before fetching their metadata.
            self.respond("HEAD")

        def respond(self, method: str) -> None:
            server.requests.append((method, self.path, self.headers.get("Authorization")))
            parts = [p for p in self.path.split("?")[0].split("/") if p]
            body: bytes | None = None
            ctype = "application/octet-stream"
            if len(parts) == 2 and parts[0] == "simple":
                project = canonicalize_name(parts[1])
                if any(_project_of(f) == project for f in self.files_for()):
                    accept = self.headers.get("Accept", "")
                    want_json = server.mode == "json" and "vnd.pypi.simple.v1+json" in accept
                    body, ctype = server.project_page(project, want_json)
                    server.page_types.append(ctype)
            elif len(parts) == 2 and parts[0] == "files":
                body = server.files.get(parts[1])
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if method == "GET":
                self.wfile.write(body)

        def files_for(self) -> Mapping[str, bytes]:
            return server.files

    return Handler


@contextmanager
def serve_index(
    files: Sequence[Path], mode: str = "json", published: Mapping[str, str] | None = None
) -> Iterator[IndexServer]:
    """Start an :class:`IndexServer` in a thread for the duration of the ``with`` block."""
    state = IndexServer({p.name: p.read_bytes() for p in files}, mode, dict(published or {}))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
