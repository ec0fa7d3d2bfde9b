"""A local git repository for tests: the git CLI with a fixed identity and no user config."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

__all__ = ["git"]


def git(repo: Path, *args: str) -> str:
    """Run ``git -C repo ARGS`` (HOME beside the repo, no system config); its stdout."""
    env = {
        **os.environ,
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(repo.parent),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()
