"""The cluster task spec: what a task carries, read back as written; a spec of another
format, or not a spec at all, is refused with what it is."""

from __future__ import annotations

import json

import pytest

import buildprint
from buildprint.cluster.spec import DepSpec, SourceSpec, TaskSpec, lock_entry_data
from buildprint.errors import InputError
from buildprint.resolve.lockfile import LockedBuildDeps, PinnedWheel


def _spec() -> TaskSpec:
    locked = LockedBuildDeps(
        ["setuptools>=64"],
        [PinnedWheel("setuptools", "80.0", "setuptools-80.0-py3-none-any.whl", "u", "a" * 64)],
        source="b" * 64,
    )
    return TaskSpec(
        buildprint="0.1.0",
        name="alpha",
        version="1.0",
        signature="c" * 64,
        manifest={"signature": "c" * 64},
        project={"signature": {"env-pass-through": ["TOKEN"]}},
        settings={"env": {"CFLAGS": "-O2"}},
        secret_env=["API_KEY"],
        files={"plugins/p.py": "d" * 64},
        source=SourceSpec("archive", "e" * 64, "alpha-1.0.tar.gz", "dist/a", "f" * 64, 3, 10, None),
        patches={"0001.patch": "1" * 64},
        locked=lock_entry_data(locked),
        wheels={"setuptools-80.0-py3-none-any.whl": "a" * 64},
        deps=[DepSpec("tool", "1.0", "2" * 64, "3" * 64)],
        install_deps=[],
        remote="http://127.0.0.1:1/cache",
        trusted_keys=["ed25519:x"],
    )


def test_a_spec_reads_back_as_written() -> None:
    spec = _spec()
    again = TaskSpec.from_bytes(spec.to_bytes())
    assert again == spec
    assert again.lock_entry() == LockedBuildDeps(
        ["setuptools>=64"],
        [PinnedWheel("setuptools", "80.0", "setuptools-80.0-py3-none-any.whl", "u", "a" * 64)],
        source="b" * 64,
    )
    assert again.to_bytes() == spec.to_bytes()  # canonical: the same spec, the same digest


def test_another_format_or_garbage_is_refused() -> None:
    raw = json.loads(_spec().to_bytes())
    raw["format"] = 99
    with pytest.raises(InputError, match="format 99"):
        TaskSpec.from_bytes(json.dumps(raw).encode())
    with pytest.raises(InputError, match="unreadable task spec"):
        TaskSpec.from_bytes(b"[1, 2]")
    del raw["source"]
    raw["format"] = 1
    with pytest.raises(InputError, match="unreadable task spec"):
        TaskSpec.from_bytes(json.dumps(raw).encode())


def test_the_named_worker_task_refuses_another_version() -> None:
    from buildprint.cluster.coordinator import _worker_task

    said = _worker_task("0" * 64, "http://127.0.0.1:9/cache", "0.0.0-other")
    assert said["status"] == "refused"
    assert "0.0.0-other" in said["reason"] and buildprint.__version__ in said["reason"]
