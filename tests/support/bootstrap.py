"""Real sdists of a bootstrap closure (build backends and their dependencies), pinned, from
PyPI once into a persistent cache: the offline from-source tests build them.

``python -m tests.support.bootstrap`` fills the cache (``.ci/run`` does, before the tests).
``BUILDPRINT_TEST_SDISTS`` moves it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

__all__ = ["BOOTSTRAP_SDISTS", "SDISTS_ENV", "bootstrap_sdists", "fill_cache"]

SDISTS_ENV = "BUILDPRINT_TEST_SDISTS"

#: filename -> sha256: setuptools, wheel, flit_core, packaging, hatchling (self-hosting, its
#: build requirements given by its own backend) and what they need, down to the backends
#: that build themselves (setuptools, flit_core, hatchling, poetry-core).
BOOTSTRAP_SDISTS: dict[str, str] = {
    "setuptools-84.2.1.tar.gz": "3ff8b3b5492a0aa66960f4419365a86b84e013070d4313e4d4a6894f5d64d6bc",
    "wheel-0.48.0.tar.gz": "94800765601e9171bf5d58d066e640662842bcedcbab982b2c90787a2c987322",
    "flit_core-4.2.0.tar.gz": "84e4e4d8fdd45ba2613800a3ebc6834de26d47ec9746efc3719f94181137b460",
    "packaging-26.4.tar.gz": "c4b671c41ddb9bf26e543c37723610d28fb6bf7affc4da17cf048d419d2c062a",
    "hatchling-1.33.0.tar.gz": "4c422bd4d554fcff5de5b73e9596f85e41e9f97f7e553d8f7595ecb31a627bef",
    "pathspec-1.1.1.tar.gz": "17db5ecd524104a120e173814c90367a96a98d07c45b2e10c2f3919fff91bf5a",
    "pluggy-1.7.0.tar.gz": "d1eaa46ebb595891b860ab086b4d09c8588af65ebd4361b8e8f4bb8920b90ba8",
    "trove_classifiers-2026.9.21.13.tar.gz": (
        "0a9ebc8d4e2f3e8a22848c5258033035bec17a3012ac3fea16dbaa764489eb71"
    ),
    "tomlkit-0.15.2.tar.gz": "83e32755ba1d20d9340bd069ee97e9f6232ba2346b63ffcba425de01f7e327a6",
    "poetry_core-2.5.0.tar.gz": "81d04c9253b19d0604718268d781867c8f7b2128e5b25bbf1e84141eec6b89c4",
    "calver-2025.10.20.tar.gz": "c98b376c2424642224d456b2f70c51402343e008c63d204634665e1a2a2835f5",
    "setuptools_scm-10.3.4.tar.gz": (
        "a69f28bfc245608781205e912faae437c2b2165773afa4e7b979d77447a69dd2"
    ),
    "vcs_versioning-2.6.0.tar.gz": (
        "22e9159288e2d8bca2fa6f6c31c34c9c66aec157f60e9e526f5d160d2516d60f"
    ),
}

_INDEX = "https://pypi.org/simple/"


def _cache_dir() -> Path:
    configured = os.environ.get(SDISTS_ENV)
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "buildprint-tests" / "sdists"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _project(filename: str) -> str:
    return filename.rsplit("-", 1)[0].replace("_", "-").lower()


def fill_cache(folder: Path | None = None) -> Path:
    """Download every missing sdist (checked against its pinned sha256) into the cache."""
    folder = folder or _cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for filename, sha256 in BOOTSTRAP_SDISTS.items():
        target = folder / filename
        if target.exists() and _sha256(target) == sha256:
            continue
        page_url = urllib.parse.urljoin(_INDEX, _project(filename) + "/")
        request = urllib.request.Request(
            page_url, headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            files = json.load(response)["files"]
        url = next(f["url"] for f in files if f["filename"] == filename)
        with urllib.request.urlopen(urllib.parse.urljoin(page_url, url), timeout=120) as got:
            data = got.read()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise RuntimeError(f"{filename} from PyPI does not have the pinned sha256")
        # Written beside the cache and moved in: an interrupted fill leaves no partial file.
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".download-", delete=False) as tmp:
            tmp.write(data)
        os.replace(tmp.name, target)
    return folder


@pytest.fixture(scope="session")
def bootstrap_sdists() -> Path:
    """The folder holding :data:`BOOTSTRAP_SDISTS` (filled from PyPI when incomplete)."""
    return fill_cache()


if __name__ == "__main__":
    print(fill_cache(Path(sys.argv[1]) if len(sys.argv) > 1 else None))
