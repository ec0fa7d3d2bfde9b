"""Running plugin hooks: loading from the project, errors at the plugin's file:line, and two
projects' same-named modules kept apart."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildprint.errors import InputError
from buildprint.project.hooks import call_hook, load_function, load_hooks


def plugin(root: Path, name: str, code: str) -> Path:
    folder = root / "plugins"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").touch()
    path = folder / f"{name}.py"
    path.write_text(code)
    return path


def test_hooks_are_collected_and_called(tmp_path: Path) -> None:
    plugin(tmp_path, "helpers", "FLAG = 'from-helper'\n")
    plugin(
        tmp_path,
        "alpha",
        "from plugins.helpers import FLAG\n"
        "def update_env(pkg, env):\n    return {**env, 'FLAG': FLAG + pkg}\n"
        "def signature(pkg, sig):\n    sig.append(pkg)\n"
        "def not_a_hook():\n    pass\n",
    )
    hooks = load_hooks(tmp_path, "plugins.alpha")
    assert hooks.names == ("signature", "update_env")
    assert "build_wheel" not in hooks
    assert call_hook(hooks, "update_env", "-x", {"A": "1"}) == {"A": "1", "FLAG": "from-helper-x"}
    seen: list[str] = []
    call_hook(hooks, "signature", "alpha", seen)
    assert seen == ["alpha"]
    with pytest.raises(KeyError):
        call_hook(hooks, "prepare_source", "alpha")


def test_a_raising_hook_is_an_input_error_at_its_line(tmp_path: Path) -> None:
    path = plugin(
        tmp_path,
        "broken",
        "def signature(pkg, sig):\n    x = 1\n    raise RuntimeError('no ABI for ' + pkg)\n",
    )
    hooks = load_hooks(tmp_path, "plugins.broken")
    with pytest.raises(InputError) as raised:
        call_hook(hooks, "signature", "alpha", None)
    assert Path(str(raised.value.file)) == path and raised.value.line == 3
    assert "RuntimeError: no ABI for alpha" in str(raised.value)


@pytest.mark.parametrize(
    ("code", "line", "fragment"),
    [
        ("def signature(pkg, sig)\n    pass\n", 1, "SyntaxError"),
        ("import os\nraise SystemExit('bye')\n", 2, "SystemExit: bye"),
        ("signature = 42\n", None, "must be a function, not int"),
    ],
)
def test_bad_plugin_modules_name_file_and_line(
    tmp_path: Path, code: str, line: int | None, fragment: str
) -> None:
    path = plugin(tmp_path, "bad", code)
    with pytest.raises(InputError) as raised:
        load_hooks(tmp_path, "plugins.bad")
    assert Path(str(raised.value.file)) == path and raised.value.line == line
    assert fragment in str(raised.value)


def test_a_missing_module_or_function_is_named(tmp_path: Path) -> None:
    plugin(tmp_path, "site", "def other():\n    pass\n")
    with pytest.raises(InputError, match="defines no 'host_signature'"):
        load_function(tmp_path, "plugins.site:host_signature")
    with pytest.raises(InputError):
        load_hooks(tmp_path, "plugins.nowhere")


def test_two_projects_with_the_same_module_name_do_not_share_code(tmp_path: Path) -> None:
    for label in ("one", "two"):
        root = tmp_path / label
        plugin(root, "shared", f"WHO = {label!r}\n")
        plugin(
            root,
            "alpha",
            "def update_env(pkg, env):\n"
            "    from plugins.shared import WHO\n"
            "    return {'WHO': WHO}\n",
        )
    one = load_hooks(tmp_path / "one", "plugins.alpha")
    two = load_hooks(tmp_path / "two", "plugins.alpha")
    assert call_hook(one, "update_env", None, {}) == {"WHO": "one"}
    assert call_hook(two, "update_env", None, {}) == {"WHO": "two"}
    assert call_hook(one, "update_env", None, {}) == {"WHO": "one"}
