"""Settings files: valid ones load; every mistake names the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildprint.errors import InputError, PolicyError
from buildprint.inputs.patches import find_patches, patches_value
from buildprint.project.project import Project, read_requirements


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_full_settings_load(tmp_path: Path) -> None:
    write(
        tmp_path / "buildprint.toml",
        '[project]\nindex-url = "file:///x"\n[signature]\nenv-pass-through = ["CUDA_HOME"]\n'
        'host-hook = "plugins.site:host_signature"\n[[remote]]\nurl = "s3://b/p"\nwrite = true\n',
    )
    write(
        tmp_path / "packages" / "Alpha.toml",
        'source = { path = "dist/alpha-1.0.tar.gz" }\nplugin = "plugins.alpha"\n'
        'env = { CFLAGS = "-O2" }\nconfig-settings = { "--build-option" = "--cpp" }\n'
        'rebuild = 2\n[signature]\nremove = ["toolchain"]\nversion = "minor"\n'
        '[signature.deps]\ntorch = "artifact"\n',
    )
    project = Project.load(tmp_path)
    assert project.settings.signature.env_pass_through == ["CUDA_HOME"]
    assert project.settings.remote[0].write is True
    alpha = project.package_settings("alpha")
    assert alpha.rebuild == 2 and alpha.env == {"CFLAGS": "-O2"}
    assert alpha.signature.policy().deps == {"torch": "artifact"}
    assert project.package_settings("other").rebuild == 0


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('env = { A = "1" }\nbogus = 1\n', 2, "unknown key 'bogus'"),
        ("rebuild = -1\n", 1, "rebuild"),
        ('rebuild = "x"\n', 1, "rebuild"),
        ('[signature]\nversion = "patch"\n', 2, "signature.version"),
        ('[signature]\nremove = ["toolchains"]\n', 2, "unknown component 'toolchains'"),
        ('\n[signature.deps]\nnumpy = "minor"\ntorch = "abi"\n', 4, "torch"),
        ('source = { url = "https://x/y.tar.gz" }\n', 1, "sha256"),
        ("env = [\n", 1, "invalid TOML"),
    ],
)
def test_mistakes_name_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    file = write(tmp_path / "packages" / "alpha.toml", text)
    with pytest.raises(InputError) as info:
        Project.load(tmp_path).package_settings("alpha")
    assert info.value.file == str(file)
    assert info.value.line == line
    assert message in str(info.value)
    assert str(info.value).startswith(f"{file}:{line}: ")


def test_policy_errors_are_input_errors(tmp_path: Path) -> None:
    write(tmp_path / "packages" / "alpha.toml", '[signature.deps]\ntorch = "abi"\n')
    with pytest.raises(PolicyError):
        Project.load(tmp_path).validate()


def test_requirements_errors_have_lines(tmp_path: Path) -> None:
    write(tmp_path / "requirements.txt", "# comment\nalpha==1.0\n\nbeta >= 2 # why\nnot valid!!\n")
    with pytest.raises(InputError) as info:
        read_requirements(tmp_path / "requirements.txt")
    assert info.value.line == 5
    write(tmp_path / "requirements.txt", "alpha==1.0\nbeta>=2\n")
    assert [r.name for r in read_requirements(tmp_path / "requirements.txt")] == ["alpha", "beta"]


def test_patches_are_ordered_across_folders(tmp_path: Path) -> None:
    write(tmp_path / "patches" / "Alpha" / "0002-b.patch", "b")
    write(tmp_path / "patches" / "alpha-1.0" / "0001-a.patch", "a")
    write(tmp_path / "patches" / "alpha-2.0" / "0000-other.patch", "x")
    write(tmp_path / "patches" / "alphabet" / "0000-no.patch", "x")
    found = find_patches(tmp_path / "patches", "alpha", "1.0")
    assert [p.name for p in found] == ["0001-a.patch", "0002-b.patch"]
    assert list(patches_value(found)) == ["0001-a.patch", "0002-b.patch"]
    write(tmp_path / "patches" / "alpha" / "0001-a.patch", "dup")
    with pytest.raises(InputError, match="two folders"):
        find_patches(tmp_path / "patches", "alpha", "1.0")
