"""Requirements files read as pip reads them: ``-c`` constraints, ``--hash`` options, a package
required twice, environment markers; every refusal at its file and line."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from buildprint.errors import InputError
from buildprint.project.project import (
    LocatedRequirement,
    Project,
    combine_requirements,
    constraints_allow,
    is_pinned,
    parse_requirement,
    read_constraints,
    read_requirements,
)
from buildprint.resolve.markers import this_environment

SHA_A = "a" * 64
SHA_B = "b" * 64
SHA_C = "c" * 64


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def combined(path: Path, environment: dict[str, str] | None = None) -> dict[str, Requirement]:
    """``path`` read and combined, by name."""
    constraints: list[Requirement] = []
    found = read_requirements(path, None, constraints)
    out = combine_requirements(found, constraints, environment)
    names = [canonicalize_name(r.name) for r in out]
    assert len(names) == len(set(names)), names
    return dict(zip(names, out, strict=True))


def refused(path: Path, environment: dict[str, str] | None = None) -> InputError:
    with pytest.raises(InputError) as info:
        combined(path, environment)
    return info.value


# -- constraints -----------------------------------------------------------------------------


def test_constraints_narrow_required_packages_and_add_none(tmp_path: Path) -> None:
    write(tmp_path / "constraints.txt", "alpha<2\nunrequired==1.0\n-c more-constraints.txt\n")
    write(tmp_path / "more-constraints.txt", "# nested\nbeta!=1.5 ; os_name == 'posix'\n")
    requirements = write(tmp_path / "requirements.txt", "-c constraints.txt\nalpha>=1\nbeta\n")

    found = combined(requirements)

    assert sorted(found) == ["alpha", "beta"]  # 'unrequired' is not added
    assert found["alpha"].specifier.contains("1.9") and not found["alpha"].specifier.contains("2")
    assert not found["beta"].specifier.contains("1.5")
    beta = found["beta"]
    assert isinstance(beta, LocatedRequirement)
    assert (beta.file, beta.line) == (requirements, 3)  # the requirement's own line
    assert [(c.file, c.line) for c in beta.constraints] == [(tmp_path / "more-constraints.txt", 2)]
    assert "constraint beta!=1.5" in beta.also()


def test_a_constraint_whose_marker_is_false_is_ignored(tmp_path: Path) -> None:
    write(tmp_path / "c.txt", 'alpha<1 ; python_version < "3"\n')
    requirements = write(tmp_path / "requirements.txt", "-c c.txt\nalpha\n")
    assert str(combined(requirements)["alpha"].specifier) == ""


def test_constraints_from_the_command_line_are_read_like_c_lines(tmp_path: Path) -> None:
    cli = write(tmp_path / "cli-constraints.txt", "alpha==1.2\n-c nested.txt\n")
    write(tmp_path / "nested.txt", "beta<3\n")
    files: list[Path] = []
    constraints = read_constraints(cli, files)
    assert [str(c) for c in constraints] == ["alpha==1.2", "beta<3"]
    assert files == [cli, tmp_path / "nested.txt"]
    out = combine_requirements(
        [parse_requirement("alpha>=1"), parse_requirement("beta")], constraints
    )
    assert [str(r) for r in out] == ["alpha==1.2", "beta<3"]
    assert is_pinned(out[0])  # the pin alone: '>=1' allows it


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("alpha[extra]<2", "constraints cannot have extras"),
        ("alpha @ https://host.example/alpha-1.0.tar.gz#sha256=" + SHA_A, "cannot be a URL"),
        ("-r requirements.txt", "in a constraints file"),
        ("-e ./alpha", "unsupported option -e"),
    ],
)
def test_what_a_constraint_cannot_be_is_refused_at_its_line(
    tmp_path: Path, line: str, message: str
) -> None:
    write(tmp_path / "c.txt", f"# constraints\n{line}\n")
    requirements = write(tmp_path / "requirements.txt", "-c c.txt\nalpha\n")
    error = refused(requirements)
    assert (error.file, error.line) == (str(tmp_path / "c.txt"), 2)
    assert message in error.message


def test_a_constraint_no_version_of_the_requirement_meets_names_both_lines(tmp_path: Path) -> None:
    write(tmp_path / "c.txt", "alpha<1.0\n")
    requirements = write(tmp_path / "requirements.txt", "-c c.txt\nalpha==1.0\n")
    error = refused(requirements)
    assert (error.file, error.line) == (str(tmp_path / "c.txt"), 1)
    assert f"alpha==1.0 at {requirements}:2" in error.message
    assert "no version can satisfy both" in error.message


def test_constraints_allow_says_whether_a_version_is_allowed(tmp_path: Path) -> None:
    constraints = read_constraints(write(tmp_path / "c.txt", "alpha<2\nalpha!=1.5\n"))
    assert constraints_allow(constraints, "Alpha", "1.4")
    assert not constraints_allow(constraints, "alpha", "1.5")
    assert not constraints_allow(constraints, "alpha", "2.0")
    assert constraints_allow(constraints, "beta", "9")


def test_an_include_cycle_through_a_constraints_file_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "c.txt", "beta<2\n-c requirements.txt\n")
    requirements = write(tmp_path / "requirements.txt", "-c c.txt\nalpha\n")
    error = refused(requirements)
    assert (error.file, error.line) == (str(tmp_path / "c.txt"), 2)
    assert "cycle: requirements.txt:1 -> c.txt:2 -> requirements.txt" in error.message


def test_a_missing_constraints_file_is_named(tmp_path: Path) -> None:
    requirements = write(tmp_path / "requirements.txt", "alpha\n--constraint=nowhere.txt\n")
    error = refused(requirements)
    assert (error.file, error.line) == (str(requirements), 2)
    assert "-c nowhere.txt: no such file" in error.message


# -- hashes ---------------------------------------------------------------------------------


def test_pip_compile_hash_lines_are_read(tmp_path: Path) -> None:
    requirements = write(
        tmp_path / "requirements.txt",
        "# This file is autogenerated by pip-compile\n"
        "certifi==2024.8.30 \\\n"
        f"    --hash=sha256:{SHA_A.upper()} \\\n"
        f"    --hash sha256:{SHA_B}\n"
        "    # via requests\n"
        f"idna==3.10 --hash=sha256:{SHA_C}\n",
    )
    found = combined(requirements)
    certifi, idna = found["certifi"], found["idna"]
    assert isinstance(certifi, LocatedRequirement) and isinstance(idna, LocatedRequirement)
    assert str(certifi) == "certifi==2024.8.30"
    assert certifi.hashes == {SHA_A, SHA_B}
    assert (certifi.line, idna.line) == (2, 6)
    assert idna.hashes == {SHA_C}


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (f"--hash=md5:{SHA_A[:32]}", "sha256 digests only"),
        ("--hash=sha256:1234", "64 hex digits"),
        ("--hash=" + SHA_A, "want --hash=sha256:HEX"),
        ("--hash", "want --hash=sha256:HEX"),
        ("--pre", "unsupported option --pre"),
        (f"--hash=sha256:{SHA_A} stray", "unexpected 'stray'"),
    ],
)
def test_bad_hash_options_are_refused_at_their_line(
    tmp_path: Path, option: str, message: str
) -> None:
    requirements = write(tmp_path / "requirements.txt", f"beta\nalpha==1.0 {option}\n")
    error = refused(requirements)
    assert (error.file, error.line) == (str(requirements), 2)
    assert message in error.message


def test_a_hash_alone_on_a_line_is_refused(tmp_path: Path) -> None:
    requirements = write(tmp_path / "requirements.txt", f"--hash=sha256:{SHA_A}\n")
    error = refused(requirements)
    assert error.line == 1
    assert "write it on the requirement's line" in error.message


# -- the same package twice ------------------------------------------------------------------


def test_a_package_required_twice_compatibly_is_one_requirement(tmp_path: Path) -> None:
    write(tmp_path / "more" / "pins.txt", "Six==1.16.0\nalpha[fast]>=1\n")
    requirements = write(
        tmp_path / "requirements.txt", "six\nalpha[safe]<3\n-r more/pins.txt\nsix>=1.10\n"
    )

    found = combined(requirements)

    assert str(found["six"]) == "six==1.16.0"
    assert is_pinned(found["six"])
    assert str(found["alpha"]) == "alpha[fast,safe]<3,>=1"
    six = found["six"]
    assert isinstance(six, LocatedRequirement)
    assert (six.file, six.line) == (requirements, 1)  # at its first line
    assert [(r.file, r.line) for r in six.merged] == [
        (requirements, 1),
        (tmp_path / "more" / "pins.txt", 1),
        (requirements, 4),
    ]
    assert f"Six==1.16.0 at {tmp_path / 'more' / 'pins.txt'}:1" in six.also()


@pytest.mark.parametrize(
    ("first", "second", "why"),
    [
        ("six==1.15.0", "six==1.16.0", "==1.15.0 and ==1.16.0 exclude each other"),
        ("six>=1.16", "six==1.15.0", "==1.15.0 and >=1.16 exclude each other"),
        ("six!=1.16.0", "six==1.16.0", "exclude each other"),
    ],
)
def test_a_package_required_twice_incompatibly_names_both_files_and_lines(
    tmp_path: Path, first: str, second: str, why: str
) -> None:
    other = write(tmp_path / "other.txt", f"alpha\n{second}\n")
    requirements = write(tmp_path / "requirements.txt", f"{first}\n-r other.txt\n")
    error = refused(requirements)
    assert (error.file, error.line) == (str(other), 2)
    assert f"requirement {second} conflicts with {first} at {requirements}:1" in error.message
    assert why in error.message


def test_hashes_of_one_package_given_twice_are_intersected(tmp_path: Path) -> None:
    requirements = write(
        tmp_path / "requirements.txt",
        f"six==1.16.0 --hash=sha256:{SHA_A} --hash=sha256:{SHA_B}\n"
        f"six --hash=sha256:{SHA_B} --hash=sha256:{SHA_C}\nsix>=1\n",
    )
    six = combined(requirements)["six"]
    assert isinstance(six, LocatedRequirement)
    assert six.hashes == {SHA_B}

    write(tmp_path / "requirements.txt", f"six --hash=sha256:{SHA_A}\nsix --hash=sha256:{SHA_B}\n")
    error = refused(requirements)
    assert error.line == 2
    assert "none in common" in error.message
    assert f"at {requirements}:1" in error.message


def test_direct_references_are_not_merged(tmp_path: Path) -> None:
    url = f"https://host.example/pkg-2.0.tar.gz#sha256={SHA_A}"
    requirements = write(tmp_path / "requirements.txt", f"pkg @ {url}\nother==1\npkg==3.0\n")
    out = combine_requirements(read_requirements(requirements))
    # Left for SourceResolver.check, which refuses a package referenced and required otherwise.
    assert [str(r) for r in out] == [f"pkg @ {url}", "other==1", "pkg==3.0"]


# -- markers ----------------------------------------------------------------------------------


def test_requirements_whose_marker_is_false_for_the_build_interpreter_are_dropped(
    tmp_path: Path,
) -> None:
    requirements = write(
        tmp_path / "requirements.txt",
        "alpha\n"
        'beta==1.0 ; python_version < "3.12"\n'
        'beta==2.0 ; python_version >= "3.12"\n'
        'gamma[x] ; sys_platform == "no-such-platform"\n',
    )
    py311 = {**this_environment(), "python_version": "3.11", "python_full_version": "3.11.7"}
    py312 = {**py311, "python_version": "3.12", "python_full_version": "3.12.1"}

    assert {n: str(r.specifier) for n, r in combined(requirements, py311).items()} == {
        "alpha": "",
        "beta": "==1.0",
    }
    assert str(combined(requirements, py312)["beta"].specifier) == "==2.0"


def test_the_environment_is_asked_for_only_when_a_marker_needs_it(tmp_path: Path) -> None:
    asked: list[int] = []

    def environment() -> Mapping[str, str]:
        asked.append(1)
        return this_environment()

    plain = read_requirements(write(tmp_path / "a.txt", "alpha\nbeta\n"))
    assert len(combine_requirements(plain, (), environment)) == 2
    assert asked == []
    marked = read_requirements(write(tmp_path / "b.txt", 'alpha ; os_name == "posix"\nbeta\n'))
    assert len(combine_requirements(marked, (), environment)) == 2
    assert asked == [1]


def test_the_project_requirements_apply_their_constraints(tmp_path: Path) -> None:
    write(tmp_path / "constraints.txt", "alpha<2\n")
    write(tmp_path / "requirements.txt", "-c constraints.txt\nalpha\nalpha>=1\n")
    assert [str(r) for r in Project.load(tmp_path).requirements()] == ["alpha<2,>=1"]


# -- settings lines -----------------------------------------------------------------------------


def test_a_setting_error_about_one_array_item_is_at_that_items_line(tmp_path: Path) -> None:
    write(
        tmp_path / "buildprint.toml",
        "[project]\n"
        'index-url = "https://index.example/simple"\n'
        "extra-index-url = [\n"
        '    "https://one.example/simple",\n'
        "    'ftp://two.example/simple',\n"
        "]\n"
        'store = ".buildprint"\n',
    )
    project = Project.load(tmp_path)
    key = ("project", "extra-index-url")
    assert project.setting_error(key, "x", value="ftp://two.example/simple").line == 5
    assert project.setting_error(key, "x", value="https://one.example/simple").line == 4
    assert project.setting_error(key, "x", value="not there").line == 3
    assert project.setting_error(key, "x").line == 3
