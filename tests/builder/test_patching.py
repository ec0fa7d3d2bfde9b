"""apply_patches: order, dry-run safety and errors that name the patch file, hunk and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from buildprint.builder.patching import apply_patches, parse_sections
from buildprint.errors import InputError

ORIGINAL = "".join(f"line {n}\n" for n in range(1, 41))


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: a tree that 'loses nothing' compares equal."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def make_tree(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "x.py").write_text(ORIGINAL)
    (root / "README").write_text("readme\n")
    return root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "pkg-1.0")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# Patch 1: line 5 -> "five" and line 30 -> "thirty" (two hunks).
PATCH_1 = """\
From: someone
Subject: numbers as words

--- a/src/x.py
+++ b/src/x.py
@@ -3,5 +3,5 @@
 line 3
 line 4
-line 5
+five
 line 6
 line 7
@@ -28,5 +28,5 @@
 line 28
 line 29
-line 30
+thirty
 line 31
 line 32
"""

# Patch 2 builds on patch 1 (its first hunk needs "five").
PATCH_2_GOOD = """\
--- a/src/x.py
+++ b/src/x.py
@@ -4,3 +4,3 @@
 line 4
-five
+FIVE
 line 6
"""

# Patch 2 whose first hunk applies but whose second hunk's context does not exist.
PATCH_2_BAD = """\
--- a/README
+++ b/README
@@ -1 +1,2 @@
 readme
+more
--- a/src/x.py
+++ b/src/x.py
@@ -4,3 +4,3 @@
 line 4
-five
+FIVE
 line 6
@@ -16,3 +16,3 @@
 line 16
-line 17 (not what the file says)
+seventeen
 line 18
"""


def test_patches_apply_in_the_given_order(tree: Path, tmp_path: Path) -> None:
    first = write(tmp_path / "0001-words.patch", PATCH_1)
    second = write(tmp_path / "0002-shout.patch", PATCH_2_GOOD)

    apply_patches(tree, [first, second])

    text = (tree / "src" / "x.py").read_text().splitlines()
    assert text[4] == "FIVE"
    assert text[29] == "thirty"
    assert sorted(snapshot(tree)) == ["README", "src/x.py"]  # no .orig / .rej left behind


def test_the_wrong_order_fails_on_the_dependent_patch(tree: Path, tmp_path: Path) -> None:
    first = write(tmp_path / "0001-words.patch", PATCH_1)
    second = write(tmp_path / "0002-shout.patch", PATCH_2_GOOD)

    with pytest.raises(InputError) as caught:
        apply_patches(tree, [second, first])

    assert caught.value.file == str(second)
    assert caught.value.line == 3
    assert (tree / "src" / "x.py").read_text() == ORIGINAL


def test_a_failing_hunk_names_patch_hunk_and_line_and_loses_nothing(
    tree: Path, tmp_path: Path
) -> None:
    first = write(tmp_path / "0001-words.patch", PATCH_1)
    bad = write(tmp_path / "0002-broken.patch", PATCH_2_BAD)
    apply_patches(tree, [first])
    after_first = snapshot(tree)
    other = make_tree(tmp_path / "other" / "pkg-1.0")

    with pytest.raises(InputError) as caught:
        apply_patches(other, [first, bad])

    error = caught.value
    assert error.file == str(bad)
    # The second @@ of src/x.py's section: line 13 of the patch file.
    assert error.line == 13
    assert PATCH_2_BAD.splitlines()[12].startswith("@@ -16,3")
    assert "hunk #2 at line 16 of src/x.py does not apply" in error.message
    assert f"{bad}:13: " in str(error)
    # Exactly the tree patch 1 made: the good hunks of patch 2 were not applied either.
    assert snapshot(other) == after_first


def test_an_already_applied_patch_is_reported(tree: Path, tmp_path: Path) -> None:
    first = write(tmp_path / "0001-words.patch", PATCH_1)
    apply_patches(tree, [first])
    before = snapshot(tree)

    with pytest.raises(InputError, match="already applied") as caught:
        apply_patches(tree, [first])

    assert caught.value.line == 4
    assert snapshot(tree) == before


def test_a_patch_for_a_missing_file_gives_the_input_line(tree: Path, tmp_path: Path) -> None:
    patch = write(
        tmp_path / "missing.patch",
        "intro\n--- a/src/nope.py\n+++ b/src/nope.py\n@@ -1 +1 @@\n-a\n+b\n",
    )

    with pytest.raises(InputError, match="does not exist") as caught:
        apply_patches(tree, [patch])

    assert caught.value.file == str(patch)
    assert caught.value.line == 4


def test_malformed_and_empty_patches(tree: Path, tmp_path: Path) -> None:
    malformed = write(
        tmp_path / "malformed.patch",
        "--- a/src/x.py\n+++ b/src/x.py\n@@ -1,3 +1,3 @@\n-line 1\n+one\n line 2\nxx\n line 3\n",
    )
    with pytest.raises(InputError, match="malformed") as caught:
        apply_patches(tree, [malformed])
    assert caught.value.line == 7

    garbage = write(tmp_path / "garbage.patch", "this is not a diff\n")
    with pytest.raises(InputError, match="no diff") as caught:
        apply_patches(tree, [garbage])
    assert caught.value.file == str(garbage)
    assert (tree / "src" / "x.py").read_text() == ORIGINAL


def test_a_patch_escaping_the_tree_is_refused(tree: Path, tmp_path: Path) -> None:
    evil = write(
        tmp_path / "evil.patch", "--- a/../escaped.py\n+++ b/../escaped.py\n@@ -0,0 +1 @@\n+x\n"
    )

    with pytest.raises(InputError, match="leaves the source tree"):
        apply_patches(tree, [evil])

    assert not (tree.parent / "escaped.py").exists()


def test_missing_patch_file_and_new_files(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist") as caught:
        apply_patches(tree, [tmp_path / "absent.patch"])
    assert caught.value.file == str(tmp_path / "absent.patch")

    creates = write(
        tmp_path / "new.patch",
        "diff --git a/src/new.py b/src/new.py\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/src/new.py\n@@ -0,0 +1,2 @@\n+a\n+b\n",
    )
    apply_patches(tree, [creates])
    assert (tree / "src" / "new.py").read_text() == "a\nb\n"


def test_sections_skip_removed_lines_that_look_like_headers() -> None:
    text = (
        "--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1,2 @@\n--- comment\n-+++ more\n+new\n+new2\n"
        "@@ -9 +9 @@\n-x\n+y\n"
    )
    [section] = parse_sections(text)
    assert section.names == ("q.sql",)
    assert section.hunk_lines == [3, 8]
