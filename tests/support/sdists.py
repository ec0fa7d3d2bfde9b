"""Test fixture factory: real, deterministic ``.tar.gz`` sdists for every supported backend."""

from __future__ import annotations

import gzip
import io
import re
import shutil
import tarfile
import textwrap
from pathlib import Path
from typing import Literal

__all__ = ["BACKENDS", "Backend", "extract_sdist", "make_sdist", "module_name", "sdist_stem"]

Backend = Literal["setuptools", "hatchling", "flit_core", "c-ext"]
BACKENDS: tuple[Backend, ...] = ("setuptools", "hatchling", "flit_core", "c-ext")

# Fixed archive metadata so the same arguments always give the same bytes.
_MTIME = 1_700_000_000


def module_name(name: str) -> str:
    """The importable module a fixture package ships: ``my-pkg`` -> ``my_pkg``."""
    return re.sub(r"[-_.]+", "_", name).lower()


def sdist_stem(name: str, version: str) -> str:
    """``{name}-{version}`` as the sdist spec spells it (name normalised to underscores)."""
    return f"{module_name(name)}-{version}"


def _build_system(backend: Backend) -> str:
    if backend == "hatchling":
        return 'requires = ["hatchling"]\nbuild-backend = "hatchling.build"'
    if backend == "flit_core":
        return 'requires = ["flit_core>=3.4,<5"]\nbuild-backend = "flit_core.buildapi"'
    return 'requires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"'


def _backend_tables(backend: Backend, module: str) -> str:
    if backend == "hatchling":
        return f'[tool.hatch.build.targets.wheel]\npackages = ["{module}"]\n'
    if backend == "flit_core":
        return f'[tool.flit.module]\nname = "{module}"\n'
    return f'[tool.setuptools]\npackages = ["{module}"]\n'


def _default_files(
    name: str, version: str, backend: Backend, extra_pyproject: str
) -> dict[str, str]:
    module = module_name(name)
    pyproject = (
        f"[build-system]\n{_build_system(backend)}\n\n"
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
        f'description = "{name}, a buildprint test package"\nrequires-python = ">=3.8"\n\n'
        f"{_backend_tables(backend, module)}"
    )
    if extra_pyproject:
        pyproject += "\n" + textwrap.dedent(extra_pyproject).strip() + "\n"
    init = f'"""{name} test package."""\n\n__version__ = "{version}"\n'
    files = {
        "pyproject.toml": pyproject,
        f"{module}/__init__.py": init,
        "README.txt": f"{name} {version}\n",
    }
    if backend == "c-ext":
        files[f"{module}/__init__.py"] = init + "\nfrom ._speedups import add\n"
        files[f"{module}/_speedups.c"] = _C_SOURCE.replace("@MODULE@", f"{module}._speedups")
        files["setup.py"] = (
            "from setuptools import Extension, setup\n\n"
            "setup(\n"
            f'    ext_modules=[Extension("{module}._speedups", ["{module}/_speedups.c"])],\n'
            ")\n"
        )
    return files


_C_SOURCE = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) {
        return NULL;
    }
    return PyLong_FromLong(a + b);
}

/* How this module was compiled: what a default build must share with `pip wheel`. */
static PyObject *flags(PyObject *self, PyObject *unused) {
#ifdef NDEBUG
    int ndebug = 1;
#else
    int ndebug = 0;
#endif
#ifdef __OPTIMIZE__
    int optimize = 1;
#else
    int optimize = 0;
#endif
    return Py_BuildValue("{s:i,s:i}", "NDEBUG", ndebug, "__OPTIMIZE__", optimize);
}

static PyMethodDef methods[] = {
    {"add", add, METH_VARARGS, "Add two integers in C."},
    {"flags", flags, METH_NOARGS, "How this module was compiled."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "@MODULE@", NULL, -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
"""


def _pkg_info(name: str, version: str) -> str:
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {name}\n"
        f"Version: {version}\n"
        f"Summary: {name}, a buildprint test package\n"
        "Requires-Python: >=3.8\n"
    )


def make_sdist(
    dest_dir: Path,
    name: str,
    version: str,
    backend: Backend,
    files: dict[str, str] | None = None,
    extra_pyproject: str = "",
) -> Path:
    """Write ``<dest_dir>/<name>-<version>.tar.gz``, a real sdist, and return its path.

    The tree holds ``PKG-INFO``, ``pyproject.toml`` for ``backend`` and a package ``<module>``
    whose ``__version__`` is ``version``; ``c-ext`` adds a C extension ``<module>._speedups``
    with ``add(a, b)`` and ``flags()`` (``NDEBUG``, ``__OPTIMIZE__``) built by setuptools.
    ``files`` (relative path -> text) add to or replace the defaults; ``extra_pyproject`` is
    appended to ``pyproject.toml`` (new tables only).
    The archive is deterministic: same arguments, same bytes.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
    contents = _default_files(name, version, backend, extra_pyproject)
    contents["PKG-INFO"] = _pkg_info(name, version)
    contents.update(files or {})
    stem = sdist_stem(name, version)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{stem}.tar.gz"

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        directories = {stem}
        for relative in contents:
            parts = Path(relative).parts
            for depth in range(1, len(parts)):
                directories.add("/".join((stem, *parts[:depth])))
        for directory in sorted(directories):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            info.mtime = _MTIME
            tar.addfile(info)
        for relative in sorted(contents):
            data = contents[relative].encode("utf-8")
            info = tarfile.TarInfo(f"{stem}/{relative}")
            info.size = len(data)
            info.mode = 0o644
            info.mtime = _MTIME
            tar.addfile(info, io.BytesIO(data))
    # gzip with a zero header mtime and no file name, so the bytes never vary.
    with (
        target.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
    ):
        gz.write(buffer.getvalue())
    return target


def extract_sdist(sdist: Path, parent: Path) -> Path:
    """Unpack ``sdist`` under ``parent`` (replacing an earlier unpack); return its root folder.

    Builds then happen at ``<parent>/<name>-<version>/``, a path that does not vary between
    runs, which is what makes C extension builds repeatable.
    """
    root = Path(parent) / Path(sdist).name.removesuffix(".tar.gz")
    shutil.rmtree(root, ignore_errors=True)
    Path(parent).mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as archive:
        archive.extractall(parent, filter="data")
    return root
