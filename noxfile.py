"""One session per check, running the commands ``.ci/run`` runs in CI; ``nox`` runs the quick ones.

Every session runs in the interpreter nox itself is installed in (``venv_backend="none"``):
``pip install -e '.[test]'`` already installed everything the checks need, so no session
creates a virtualenv or downloads anything. Arguments after ``--`` go to pytest in ``fast``
and ``tests`` (``nox -s tests -- -x -k remote``) and replace the paths in ``lint``.
"""

from __future__ import annotations

import sys

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "types", "fast"]

#: What ruff checks and formats; the same list as ``.ci/run`` and the pre-commit hooks.
LINT_PATHS = ("src", "tests", "bench", "noxfile.py")

#: The core suite without nginx, radosgw, pypiserver, PyPI or the slowest builds.
FAST = "not servers and not network and not slow"


def _python(session: nox.Session, *args: str) -> None:
    """Run ``python -m ARGS`` in nox's own interpreter, not whichever ``python`` is on PATH."""
    session.run(sys.executable, "-m", *args)


@nox.session
def lint(session: nox.Session) -> None:
    """``ruff check`` and ``ruff format --check``."""
    paths = session.posargs or LINT_PATHS
    _python(session, "ruff", "check", *paths)
    _python(session, "ruff", "format", "--check", *paths)


@nox.session
def types(session: nox.Session) -> None:
    """``mypy --strict`` on src and tests (the ``files`` of ``[tool.mypy]``)."""
    _python(session, "mypy")


@nox.session
def fast(session: nox.Session) -> None:
    """The core suite minus ``slow``: no servers, no network; one pytest worker per core."""
    _python(session, "pytest", "-q", "-n", "auto", "-m", FAST, *session.posargs)


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, as ``.ci/run`` runs it: needs nginx, radosgw and pypiserver."""
    _python(session, "pytest", "-q", *session.posargs)
