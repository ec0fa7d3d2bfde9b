"""The plugin component (AST-canonical, reachability-based) and loading/calling plugin hooks."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from buildprint.errors import InputError
from buildprint.inputs.plugin import HOOK_NAMES, function_reference, plugin_digest
from buildprint.project.hooks import call_hook, load_function, load_hooks
from buildprint.signature.canonical import CanonicalValue, digest_bytes, digest_value

REPO = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("plugin_digest_probe.py")

HELPERS = '''\
"""Helpers shared by several plugin modules."""

import os

SCALE = 2


def shared_flag(version):
    # Used by alpha's signature hook.
    return f"{version}-{SCALE}" + os.sep


def unrelated():
    return "only for the curious"


def beta_only(pkg):
    return pkg.name.upper()
'''

ALPHA = '''\
"""Hooks for alpha."""

from __future__ import annotations

from plugins.helpers import shared_flag

ABI = "2"


def signature(pkg, sig):
    """Pin the ABI."""
    sig["abi"] = ABI  # the ABI tag
    sig["flag"] = shared_flag(pkg["version"])
    return sig


def update_env(pkg, env):
    env = dict(env)
    env["CFLAGS"] = "-O2"
    return env


def not_a_hook():
    return 1
'''

BETA = """\
from plugins.helpers import beta_only


def signature(pkg, sig):
    sig["beta"] = beta_only(pkg)
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    write(root / "plugins" / "helpers.py", HELPERS)
    write(root / "plugins" / "alpha_hooks.py", ALPHA)
    write(root / "plugins" / "beta_hooks.py", BETA)
    return root


def alpha(root: Path) -> dict[str, CanonicalValue]:
    return plugin_digest(root, "plugins.alpha_hooks")


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new), encoding="utf-8")


# --- what counts --------------------------------------------------------------------------


def test_value_names_module_reachable_code_and_no_third_party(project: Path) -> None:
    value = alpha(project)
    assert value["module"] == "plugins.alpha_hooks"
    code = value["code"]
    assert isinstance(code, dict)
    assert {
        "plugins.alpha_hooks:signature",
        "plugins.alpha_hooks:update_env",
        "plugins.alpha_hooks:ABI",
        "plugins.alpha_hooks:shared_flag",
        "plugins.alpha_hooks:<module>",
        "plugins.helpers:shared_flag",
        "plugins.helpers:SCALE",
    } <= set(code)
    assert "plugins.alpha_hooks:not_a_hook" not in code
    assert "plugins.helpers:unrelated" not in code
    assert "plugins.helpers:beta_only" not in code
    assert all(isinstance(d, str) and len(d) == 64 for d in code.values())
    assert value["third-party"] == {}  # os and __future__ are stdlib


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("# the ABI tag", "# a different comment\n    # and another line"),
        ('"""Pin the ABI."""', '"""Pin the ABI: a new, longer docstring."""'),
        ('"""Hooks for alpha."""', '"""A module docstring, rewritten."""'),
        ('sig["abi"] = ABI', "sig[ 'abi' ]=(ABI)"),
        ("    env = dict(env)\n", "    env = dict(\n        env,\n    )\n\n"),
    ],
    ids=["comment", "docstring", "module-docstring", "formatting", "line-breaks"],
)
def test_edits_without_code_change_keep_the_digest(project: Path, old: str, new: str) -> None:
    before = alpha(project)
    edit(project / "plugins" / "alpha_hooks.py", old, new)
    assert alpha(project) == before


def changed_keys(before: dict[str, CanonicalValue], after: dict[str, CanonicalValue]) -> set[str]:
    old, new = before["code"], after["code"]
    assert isinstance(old, dict) and isinstance(new, dict)
    return {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}


def test_code_edit_in_a_hook_changes_the_digest(project: Path) -> None:
    before = alpha(project)
    edit(project / "plugins" / "alpha_hooks.py", '"-O2"', '"-O3"')
    after = alpha(project)
    assert digest_value(after) != digest_value(before)
    assert changed_keys(before, after) == {"plugins.alpha_hooks:update_env"}


def test_edit_to_a_helper_the_hook_calls_changes_it(project: Path) -> None:
    before = alpha(project)
    edit(project / "plugins" / "helpers.py", "+ os.sep", "+ os.pathsep")
    assert changed_keys(before, alpha(project)) == {"plugins.helpers:shared_flag"}


def test_edit_to_an_unrelated_helper_function_does_not(project: Path) -> None:
    before = alpha(project)
    edit(project / "plugins" / "helpers.py", "only for the curious", "changed")
    edit(project / "plugins" / "helpers.py", "pkg.name.upper()", "pkg.name.lower()")
    edit(project / "plugins" / "alpha_hooks.py", "return 1", "return 2")  # not_a_hook
    assert alpha(project) == before


def test_edit_to_another_packages_plugin_module_does_not(project: Path) -> None:
    before = alpha(project)
    beta_before = plugin_digest(project, "plugins.beta_hooks")
    edit(project / "plugins" / "beta_hooks.py", 'sig["beta"]', 'sig["BETA"]')
    assert alpha(project) == before
    assert plugin_digest(project, "plugins.beta_hooks") != beta_before


@pytest.mark.parametrize(
    ("file", "old", "new", "key"),
    [
        ("alpha_hooks.py", 'ABI = "2"', 'ABI = "3"', "plugins.alpha_hooks:ABI"),
        ("helpers.py", "SCALE = 2", "SCALE = 3", "plugins.helpers:SCALE"),
    ],
    ids=["same-module", "helper-module"],
)
def test_constant_the_hook_reads_changes_it(
    project: Path, file: str, old: str, new: str, key: str
) -> None:
    before = alpha(project)
    edit(project / "plugins" / file, old, new)
    assert changed_keys(before, alpha(project)) == {key}


def test_only_requested_hooks_count(project: Path) -> None:
    before = plugin_digest(project, "plugins.alpha_hooks", hooks=["signature"])
    code = before["code"]
    assert isinstance(code, dict) and "plugins.alpha_hooks:update_env" not in code
    edit(project / "plugins" / "alpha_hooks.py", '"-O2"', '"-O3"')
    assert plugin_digest(project, "plugins.alpha_hooks", hooks=["signature"]) == before


def test_annotations_count(project: Path) -> None:
    before = alpha(project)
    edit(
        project / "plugins" / "alpha_hooks.py",
        "def update_env(pkg, env):",
        "def update_env(pkg, env: dict):",
    )
    assert changed_keys(before, alpha(project)) == {"plugins.alpha_hooks:update_env"}


def test_relative_and_module_imports_are_followed(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root / "plugins" / "__init__.py", "")
    write(
        root / "plugins" / "util" / "__init__.py",
        """\
        LEVEL = 1
        def unrelated():
            return 0
        """,
    )
    write(root / "plugins" / "util" / "text.py", "def upper(s):\n    return s.upper()\n")
    write(
        root / "plugins" / "gamma.py",
        """\
        from . import util
        from .util.text import upper as up
        import plugins.util.text

        def signature(pkg, sig):
            sig.add("x", up(pkg.name) + str(util.LEVEL) + plugins.util.text.upper("y"))
        """,
    )
    code = plugin_digest(root, "plugins.gamma")["code"]
    assert isinstance(code, dict)
    assert {"plugins.util:LEVEL", "plugins.util.text:upper", "plugins.gamma:up"} <= set(code)
    assert "plugins.util:unrelated" not in code
    before = plugin_digest(root, "plugins.gamma")
    edit(root / "plugins" / "util" / "text.py", "s.upper()", "s.title()")
    assert changed_keys(before, plugin_digest(root, "plugins.gamma")) == {"plugins.util.text:upper"}


def test_local_names_do_not_pull_in_module_names_they_shadow(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(
        root / "hooks.py",
        """\
        env = {"unrelated": 1}

        def update_env(pkg, env):
            flags = [env for env in ("a", "b")]
            return {**env, "F": " ".join(flags)}
        """,
    )
    code = plugin_digest(root, "hooks")["code"]
    assert isinstance(code, dict) and "hooks:env" not in code


def test_dynamic_module_use_takes_the_whole_module(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root / "plugins" / "table.py", "def a():\n    return 1\n\ndef b():\n    return 2\n")
    write(
        root / "plugins" / "delta.py",
        """\
        from plugins import table

        def signature(pkg, sig):
            sig.add("x", getattr(table, pkg.name)())
        """,
    )
    before = plugin_digest(root, "plugins.delta")
    edit(root / "plugins" / "table.py", "return 2", "return 3")
    assert changed_keys(before, plugin_digest(root, "plugins.delta")) == {"plugins.table:b"}


def test_dynamic_import_in_a_regular_package_takes_its_submodules(tmp_path: Path) -> None:
    """``importlib.import_module(name)`` inside a package with ``__init__.py``: every
    submodule counts, and the package's own ``__init__`` is not taken for one of them."""
    root = tmp_path / "p"
    write(root / "plugins" / "__init__.py", "")
    write(root / "plugins" / "flags.py", "LEVEL = 1\n")
    write(
        root / "plugins" / "epsilon.py",
        """\
        import importlib

        def signature(pkg, sig):
            sig.add("x", importlib.import_module(pkg.settings["module"]).LEVEL)
        """,
    )
    before = plugin_digest(root, "plugins.epsilon")
    edit(root / "plugins" / "flags.py", "LEVEL = 1", "LEVEL = 2")
    after = plugin_digest(root, "plugins.epsilon")
    assert "plugins.flags:LEVEL" in changed_keys(before, after)


def test_import_time_statements_and_mutations_count(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(
        root / "plugins" / "eps.py",
        """\
        import os
        CONFIG = {}
        CONFIG["opt"] = "-O2"
        os.environ.setdefault("EPS_MODE", "fast")

        def update_env(pkg, env):
            return {**env, **CONFIG}
        """,
    )
    before = plugin_digest(root, "plugins.eps")
    edit(root / "plugins" / "eps.py", '"-O2"', '"-O3"')
    middle = plugin_digest(root, "plugins.eps")
    assert changed_keys(before, middle) == {"plugins.eps:CONFIG"}
    edit(root / "plugins" / "eps.py", '"fast"', '"slow"')
    assert changed_keys(middle, plugin_digest(root, "plugins.eps")) == {"plugins.eps:<module>"}


def test_code_that_acts_at_import_counts_even_if_unused(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(
        root / "plugins" / "reg.py",
        """\
        import functools

        REGISTRY = []

        def register(function):
            REGISTRY.append(function)
            return function

        @register
        def registered():
            return "a"

        @functools.cache
        def cached():
            return "b"

        if __name__ == "__main__":
            print("never runs on import")
        """,
    )
    write(
        root / "plugins" / "user.py",
        """\
        from plugins.reg import REGISTRY

        def signature(pkg, sig):
            sig.add("n", [f() for f in REGISTRY])
        """,
    )
    before = plugin_digest(root, "plugins.user")
    for old, new in [('"b"', '"B"'), ("never runs", "still never runs")]:
        edit(root / "plugins" / "reg.py", old, new)
        assert plugin_digest(root, "plugins.user") == before
    edit(root / "plugins" / "reg.py", '"a"', '"A"')
    after = plugin_digest(root, "plugins.user")
    assert changed_keys(before, after) == {"plugins.reg:<module>"}
    code = after["code"]
    assert isinstance(code, dict) and "plugins.reg:cached" not in code


def test_import_inside_a_hook_is_followed(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(root / "plugins" / "lazy_dep.py", "def f():\n    return 1\n\ndef g():\n    return 2\n")
    write(
        root / "plugins" / "lazy.py",
        """\
        def signature(pkg, sig):
            from plugins.lazy_dep import f
            sig.add("x", f())
        """,
    )
    before = plugin_digest(root, "plugins.lazy")
    edit(root / "plugins" / "lazy_dep.py", "return 2", "return 20")
    assert plugin_digest(root, "plugins.lazy") == before
    edit(root / "plugins" / "lazy_dep.py", "return 1", "return 10")
    assert changed_keys(before, plugin_digest(root, "plugins.lazy")) == {"plugins.lazy_dep:f"}


def test_third_party_import_records_its_version(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write(
        root / "plugins" / "tp.py",
        """\
        import json
        from packaging.version import Version

        def signature(pkg, sig):
            sig.add("v", str(Version(pkg.version)) + json.dumps(1))
        """,
    )
    value = plugin_digest(root, "plugins.tp")
    assert value["third-party"] == {"packaging": importlib.metadata.version("packaging")}


def test_function_reference_for_the_host_hook(project: Path) -> None:
    write(
        project / "plugins" / "site.py",
        "def host_signature(pkg):\n    return {'cuda': '12.4'}\n\ndef other():\n    return 0\n",
    )
    value = function_reference(project, "plugins.site:host_signature")
    assert value["module"] == "plugins.site"
    code = value["code"]
    assert isinstance(code, dict) and set(code) == {"plugins.site:host_signature"}
    with pytest.raises(InputError, match="defines no 'missing'") as missing:
        function_reference(project, "plugins.site:missing")
    assert missing.value.file is not None and missing.value.file.endswith("site.py")
    with pytest.raises(InputError, match="module:function"):
        function_reference(project, "plugins.site")


# --- stable across interpreters -----------------------------------------------------------

RICH = '''\
"""Exercises most of the grammar the three interpreters share."""
from __future__ import annotations

import dataclasses
from typing import Any

from plugins.helpers import shared_flag
from . import helpers as h

TABLE: dict[str, Any] = {"a": (1, 2.5, 3j, b"\\x00", ..., None, True, 10**40)}


@dataclasses.dataclass(frozen=True)
class Config(object, metaclass=type):
    level: int = 1
    tags: tuple[str, ...] = ()

    @property
    def double(self) -> int:
        return self.level * 2


async def agen(xs):
    async with xs as y:
        async for z in y:
            yield z
    await xs


def gen():
    yield from range(3)


def signature(pkg: Any, sig: Any, /, *args: int, key: str = "k", **kw: Any) -> None:
    """Doc."""
    counter = 0

    def bump() -> int:
        nonlocal counter
        counter += 1
        return counter

    cfg = Config(level=h.SCALE)
    match pkg.name:
        case "a" | "b" as n if n:
            pass
        case {"k": v, **rest}:
            pass
        case [1, *others]:
            pass
        case Config(level=1, tags=()):
            pass
        case None | -1 | 1.5:
            pass
    try:
        x = 1j + 2.5 + 0x10 + 10**100 + bump()
    except* ValueError as e:
        raise RuntimeError("x") from e
    else:
        pass
    finally:
        del cfg
    try:
        pass
    except (KeyError, TypeError):
        pass
    values = [y for y in range(3) if (w := y) > 0 if y < 10]
    data = {k: v for k, v in zip("ab", b"\\x00\\x01")}
    gset = {s for s in "abc"}
    f = lambda a, /, b=..., *c, d, **e: a[1:2, ::3]
    text = f"{x!r:>{w}}-{x:.2f}-{ {'k': x} }" + u"x" + rf"\\d{x}" + f"{'nested'}" f"tail{x=}"
    sig.add("flag", shared_flag(pkg.version) + text, *args, **kw)
    while 0 < w <= 3 is not None:
        break
    else:
        counter = not True
    assert x, "msg"
    with open("f") as (a, b), open("g"):
        pass
    global TABLE
    TABLE = {**TABLE, **data}
    return (TABLE if values else gset, f, -x, ~1, not x, x @ x if False else x // 2)
'''


def _interpreter(version: str) -> str | None:
    try:
        found = subprocess.run(
            ["pyenv", "which", "python"],
            env={**os.environ, "PYENV_VERSION": version},
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return None
    path = found.stdout.strip()
    return path if found.returncode == 0 and path and Path(path).is_file() else None


@pytest.mark.parametrize("version", ["3.12.1", "3.13.0"])
def test_same_digest_under_other_interpreters(project: Path, version: str) -> None:
    python = _interpreter(version)
    if python is None:
        pytest.skip(f"Python {version} is not installed (pyenv)")
    write(project / "plugins" / "rich.py", RICH)
    here = digest_value(plugin_digest(project, "plugins.rich"))
    ran = subprocess.run(
        [python, str(PROBE), str(project), "plugins.rich"],
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), "PYENV_VERSION": version},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert f"{sys.version_info[0]}.{sys.version_info[1]}." not in version + "."  # really another
    assert digest_bytes(ran.stdout.encode("utf-8")) == here


# --- bad input ----------------------------------------------------------------------------


def test_syntax_error_names_file_and_line(project: Path) -> None:
    edit(project / "plugins" / "helpers.py", "SCALE = 2", "SCALE = = 2")
    with pytest.raises(InputError) as caught:
        alpha(project)
    assert caught.value.file == str(project / "plugins" / "helpers.py")
    assert caught.value.line == 5
    assert "helpers.py:5: syntax error" in str(caught.value)


def test_missing_module_names_its_path(project: Path) -> None:
    with pytest.raises(InputError, match=r"plugins/nothing_here\.py") as caught:
        plugin_digest(project, "plugins.nothing_here")
    assert caught.value.file == str(project / "plugins" / "nothing_here.py")
    with pytest.raises(InputError, match="not a dotted Python module name"):
        plugin_digest(project, "plugins/alpha_hooks.py")


# --- loading and calling hooks ------------------------------------------------------------


def test_load_and_call_hooks(project: Path) -> None:
    hooks = load_hooks(project, "plugins.alpha_hooks")
    assert hooks.names == ("signature", "update_env")
    assert set(hooks.names) <= set(HOOK_NAMES)
    sig = call_hook(hooks, "signature", {"version": "1.0"}, {})
    assert sig == {"abi": "2", "flag": f"1.0-2{os.sep}"}
    assert call_hook(hooks, "update_env", {}, {"A": "1"}) == {"A": "1", "CFLAGS": "-O2"}
    assert "plugins" not in sys.modules and "plugins.alpha_hooks" not in sys.modules
    assert str(project.resolve()) not in sys.path
    assert not list(project.rglob("__pycache__"))


def test_hook_that_raises_names_plugin_file_and_line(project: Path) -> None:
    write(
        project / "plugins" / "bad.py",
        """\
        import json


        def signature(pkg, sig):
            json.dumps(1)
            raise ValueError("no ABI for " + pkg)
        """,
    )
    hooks = load_hooks(project, "plugins.bad")
    with pytest.raises(InputError) as caught:
        call_hook(hooks, "signature", "alpha", None)
    error = caught.value
    assert error.file == str(project / "plugins" / "bad.py")
    assert error.line == 6
    assert str(error).endswith(
        "bad.py:6: signature hook (plugins.bad) raised ValueError: no ABI for alpha"
    )
    assert isinstance(error.__cause__, ValueError)
    write(
        project / "plugins" / "quits.py",
        "import sys\n\ndef update_env(pkg, env):\n    sys.exit(3)\n",
    )
    with pytest.raises(InputError, match=r"quits\.py:4: update_env hook .* raised SystemExit: 3"):
        call_hook(load_hooks(project, "plugins.quits"), "update_env", None, {})


def test_error_inside_a_helper_points_at_the_helper(project: Path) -> None:
    hooks = load_hooks(project, "plugins.beta_hooks")
    with pytest.raises(InputError) as caught:
        call_hook(hooks, "signature", object(), {})  # object() has no .name
    assert caught.value.file == str(project / "plugins" / "helpers.py")
    assert caught.value.line == 18
    assert "AttributeError" in str(caught.value)


def test_import_time_failure_and_syntax_error_on_load(project: Path) -> None:
    write(project / "plugins" / "boom.py", "import os\nraise RuntimeError('at import')\n")
    with pytest.raises(InputError) as caught:
        load_hooks(project, "plugins.boom")
    assert (caught.value.file, caught.value.line) == (str(project / "plugins" / "boom.py"), 2)
    write(project / "plugins" / "broken.py", "def signature(pkg, sig):\n    return (\n")
    with pytest.raises(InputError) as broken:
        load_hooks(project, "plugins.broken")
    assert broken.value.file == str(project / "plugins" / "broken.py")
    assert broken.value.line is not None
    with pytest.raises(InputError, match="not found"):
        load_hooks(project, "plugins.absent")
    assert not any(name.startswith("plugins") for name in sys.modules)


def test_projects_with_the_same_module_names_stay_apart(tmp_path: Path) -> None:
    roots = []
    for flavour in ("one", "two"):
        root = tmp_path / flavour
        write(root / "plugins" / "helpers.py", f"FLAVOUR = {flavour!r}\n")
        write(
            root / "plugins" / "hooks.py",
            """\
            from plugins.helpers import FLAVOUR

            def signature(pkg, sig):
                # imported lazily: must resolve inside this hook's own project
                from plugins import helpers
                return FLAVOUR + "/" + helpers.FLAVOUR
            """,
        )
        roots.append(root)
    first = load_hooks(roots[0], "plugins.hooks")
    second = load_hooks(roots[1], "plugins.hooks")
    assert call_hook(second, "signature", None, None) == "two/two"
    assert call_hook(first, "signature", None, None) == "one/one"
    # and from threads at once: different projects take turns, never mix
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda h=h: results.append(call_hook(h, "signature", 0, 0)))
        for h in (first, second) * 4
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["one/one"] * 4 + ["two/two"] * 4
    assert "plugins.helpers" not in sys.modules
    assert not list(tmp_path.rglob("__pycache__"))
    assert not sys.dont_write_bytecode or os.environ.get("PYTHONDONTWRITEBYTECODE")


def test_reload_after_edit_sees_the_new_code(project: Path) -> None:
    hooks = load_hooks(project, "plugins.alpha_hooks")
    assert call_hook(hooks, "signature", {"version": "1"}, {})["abi"] == "2"
    edit(project / "plugins" / "alpha_hooks.py", 'ABI = "2"', 'ABI = "7"')
    again = load_hooks(project, "plugins.alpha_hooks")
    assert call_hook(again, "signature", {"version": "1"}, {})["abi"] == "7"


def test_load_function_for_the_host_hook(project: Path) -> None:
    write(project / "plugins" / "site.py", "def host_signature(pkg):\n    return {'cuda': pkg}\n")
    hooks = load_function(project, "plugins.site:host_signature")
    assert call_hook(hooks, "host_signature", "12.4") == {"cuda": "12.4"}
    with pytest.raises(InputError, match="defines no 'nope'"):
        load_function(project, "plugins.site:nope")
    write(project / "plugins" / "notfn.py", "host_signature = 3\n")
    with pytest.raises(InputError, match="must be a function"):
        load_function(project, "plugins.notfn:host_signature")
    with pytest.raises(KeyError):
        call_hook(hooks, "signature", None, None)
