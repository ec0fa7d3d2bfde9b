"""``rebuild = N`` gives the wheel a PEP 427 build tag: its file name and its WHEEL file say N,
RECORD stays right, pip installs it and prefers the higher tag; the content digest ignores it."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename

from buildprint.builder.wheel import artifact_digest, embed_manifest, read_manifest
from buildprint.errors import InputError
from tests.support.cli import PackageSpec, build, run_cli, write_project

MANIFEST = json.dumps({"signature": "a" * 64, "components": {}}).encode()


def _manifest(rebuild: int) -> bytes:
    return json.dumps({"signature": f"{rebuild}" * 64, "components": {"rebuild": rebuild}}).encode()


@pytest.fixture(scope="module")
def built_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real setuptools wheel of ``tinypkg 1.0``, built by pip offline."""
    root = tmp_path_factory.mktemp("tagproj")
    (root / "src" / "tinypkg").mkdir(parents=True)
    (root / "src" / "tinypkg" / "__init__.py").write_text("GREETING = 'hello'\n")
    (root / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
        '[project]\nname = "tinypkg"\nversion = "1.0"\n'
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "--quiet", "-w", str(root / "out"), str(root)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (root / "out").glob("*.whl")
    return wheel


def _member(wheel: Path, suffix: str) -> bytes:
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(suffix)]
        return zf.read(name)


def _assert_record_valid(wheel: Path) -> None:
    """RECORD lists every member (its own line empty) with its right sha256 and size."""
    with zipfile.ZipFile(wheel) as zf:
        (record,) = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
        rows = list(csv.reader(io.StringIO(zf.read(record).decode())))
        assert {row[0] for row in rows} == {i.filename for i in zf.infolist() if not i.is_dir()}
        for path, hashed, size in rows:
            if path == record:
                assert (hashed, size) == ("", "")
                continue
            data = zf.read(path)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert hashed == "sha256=" + digest.decode() and int(size) == len(data), path


def _pip_install(target: Path, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-cache-dir", "--no-deps", "--target", str(target), *args],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


# -- the wheel ---------------------------------------------------------------------------------


def test_a_build_tag_names_the_wheel_and_its_wheel_file_says_it(
    built_wheel: Path, tmp_path: Path
) -> None:
    tagged = embed_manifest(built_wheel, MANIFEST, tmp_path / "tagged", build_tag=3)
    assert tagged.name == "tinypkg-1.0-3-py3-none-any.whl"
    assert parse_wheel_filename(tagged.name)[2] == (3, "")
    assert sorted(p.name for p in (tmp_path / "tagged").iterdir()) == [tagged.name]
    wheel_file = _member(tagged, ".dist-info/WHEEL").decode()
    lines = wheel_file.splitlines()
    assert lines.count("Build: 3") == 1
    # Where bdist_wheel puts it: before the tags.
    assert lines.index("Build: 3") < lines.index("Tag: py3-none-any")
    original = _member(built_wheel, ".dist-info/WHEEL").decode()
    assert wheel_file.replace("Build: 3\n", "") == original
    assert read_manifest(tagged) == MANIFEST
    _assert_record_valid(tagged)
    # The same inputs give the same bytes; the dist-info folder keeps its name (PEP 427).
    again = embed_manifest(built_wheel, MANIFEST, tmp_path / "again", build_tag=3)
    assert again.read_bytes() == tagged.read_bytes()
    with zipfile.ZipFile(tagged) as zf:
        assert {n.split("/")[0] for n in zf.namelist() if ".dist-info/" in n} == {
            "tinypkg-1.0.dist-info"
        }


def test_no_build_tag_keeps_the_name_and_the_bytes(built_wheel: Path, tmp_path: Path) -> None:
    plain = embed_manifest(built_wheel, MANIFEST, tmp_path / "plain")
    zero = embed_manifest(built_wheel, MANIFEST, tmp_path / "zero", build_tag=0)
    assert plain.name == zero.name == built_wheel.name
    assert plain.read_bytes() == zero.read_bytes()
    assert b"Build:" not in _member(plain, ".dist-info/WHEEL")


def test_a_new_build_tag_replaces_the_old_one(built_wheel: Path, tmp_path: Path) -> None:
    first = embed_manifest(built_wheel, MANIFEST, tmp_path / "one", build_tag=1)
    second = embed_manifest(first, MANIFEST, tmp_path / "two", build_tag=12)
    assert second.name == "tinypkg-1.0-12-py3-none-any.whl"
    lines = _member(second, ".dist-info/WHEEL").decode().splitlines()
    assert [line for line in lines if line.startswith("Build:")] == ["Build: 12"]
    _assert_record_valid(second)
    # Re-tagging gives exactly what tagging the pristine wheel gives.
    direct = embed_manifest(built_wheel, MANIFEST, tmp_path / "direct", build_tag=12)
    assert second.read_bytes() == direct.read_bytes()


def test_the_content_digest_ignores_the_build_tag(built_wheel: Path, tmp_path: Path) -> None:
    # A rebuild bump whose output is the same content does not cascade to artifact-mode
    # dependents: the tag names the file, as the embedded manifest does not count either.
    plain = artifact_digest(built_wheel)
    for tag in (1, 2, 30):
        wheel = embed_manifest(built_wheel, _manifest(tag), tmp_path / str(tag), build_tag=tag)
        assert artifact_digest(wheel) == plain


@pytest.mark.parametrize("tag", [-1, True, "2"])
def test_a_bad_build_tag_is_refused_before_anything_is_written(
    built_wheel: Path, tmp_path: Path, tag: object
) -> None:
    with pytest.raises(InputError, match="build tag"):
        embed_manifest(built_wheel, MANIFEST, tmp_path / "out", build_tag=tag)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_pip_installs_a_tagged_wheel_and_prefers_the_higher_build_tag(
    built_wheel: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "wheels"
    embed_manifest(built_wheel, _manifest(0), folder)
    for tag in (2, 10, 9):  # 10 > 9 as a number, not as text
        embed_manifest(built_wheel, _manifest(tag), folder, build_tag=tag)
    assert len(list(folder.glob("*.whl"))) == 4
    target = tmp_path / "site"
    _pip_install(target, "--no-index", "--find-links", str(folder), "tinypkg==1.0")
    (info,) = target.glob("tinypkg-1.0.dist-info")
    assert (info / "buildprint.json").read_bytes() == _manifest(10)
    assert "Build: 10" in (info / "WHEEL").read_text()
    imported = subprocess.run(
        [sys.executable, "-c", "import tinypkg; print(tinypkg.GREETING)"],
        env={"PYTHONPATH": str(target)}, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert imported.stdout.strip() == "hello"


# -- through the CLI -------------------------------------------------------------------------


def test_rebuild_n_builds_a_tagged_wheel_pip_installs_and_prefers(
    tmp_path: Path, backend_wheels: Path
) -> None:
    project = write_project(
        tmp_path / "project",
        backend_wheels,
        [
            PackageSpec("alpha", settings="rebuild = 1\n"),
            PackageSpec("beta", build_requires=("alpha",)),
        ],
        project_toml='wheelhouse-keep = "all"\n',
    )
    first = build(project)
    house = project / "wheelhouse"
    assert sorted(p.name for p in house.glob("alpha-*.whl")) == ["alpha-1.0-1-py3-none-any.whl"]
    assert sorted(p.name for p in house.glob("beta-*.whl")) == ["beta-1.0-py3-none-any.whl"]
    record = json.loads(
        (project / ".buildprint" / "ac" / f"{first['alpha']['signature']}.json").read_text()
    )
    assert [a["filename"] for a in record["artifacts"]] == ["alpha-1.0-1-py3-none-any.whl"]
    page = (house / "simple" / "alpha" / "index.html").read_text()
    assert "alpha-1.0-1-py3-none-any.whl#sha256=" in page
    shown = run_cli(project, "show", str(house / "alpha-1.0-1-py3-none-any.whl"), "--json")
    assert shown.code == 0 and shown.json()["signature"] == first["alpha"]["signature"]
    _pip_install(tmp_path / "site1", "--index-url", (house / "simple").as_uri(), "alpha==1.0")
    assert (tmp_path / "site1" / "alpha" / "__init__.py").is_file()

    # rebuild = 2: a new file beside the old one, never over it. Same content: beta, which
    # builds against alpha's artifact, is not rebuilt.
    settings = project / "packages" / "alpha.toml"
    settings.write_text(settings.read_text().replace("rebuild = 1", "rebuild = 2"))
    old = (house / "alpha-1.0-1-py3-none-any.whl").read_bytes()
    second = build(project)
    assert second["alpha"]["action"] == "built" and second["alpha"]["changed"] == ["rebuild"]
    assert second["beta"]["action"] == "reused"
    assert sorted(p.name for p in house.glob("alpha-*.whl")) == [
        "alpha-1.0-1-py3-none-any.whl",
        "alpha-1.0-2-py3-none-any.whl",
    ]
    assert (house / "alpha-1.0-1-py3-none-any.whl").read_bytes() == old
    target = tmp_path / "site2"
    _pip_install(target, "--no-index", "--find-links", str(house), "alpha==1.0")
    (info,) = target.glob("alpha-1.0.dist-info")
    assert (
        json.loads((info / "buildprint.json").read_text())["signature"]
        == (second["alpha"]["signature"])
    )
    assert "Build: 2" in (info / "WHEEL").read_text()
