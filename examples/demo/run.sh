#!/usr/bin/env bash
# The buildprint demo (README command 1): build three real PyPI sdists, build again (all reused),
# then change one input and let `plan` and `why` say what would rebuild and why.
# Run from anywhere: `bash examples/demo/run.sh`. Needs network access to PyPI on the first run.
set -euo pipefail

DEMO="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$DEMO/../.." && pwd)"
PY="${PYTHON:-python3}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
note() { printf '   %s\n' "$*"; }

step "Installing buildprint from $REPO (pip install -e .)"
PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install -q -e "$REPO"
# The console script lands beside the interpreter, which may not be on PATH.
BP="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/buildprint"
[ -x "$BP" ] || BP="$(command -v buildprint)"
bp() { "$BP" "$@" -p "$DEMO"; }

# Every edit below is undone on exit, even when a step fails.
SETTINGS="$DEMO/packages/markupsafe.toml"
HOOKS="$DEMO/plugins/idna_hooks.py"
BACKUP="$(mktemp -d)"
cp "$SETTINGS" "$HOOKS" "$BACKUP/"
restore() {
    cp "$BACKUP/markupsafe.toml" "$SETTINGS"
    cp "$BACKUP/idna_hooks.py" "$HOOKS"
    rm -rf "$BACKUP"
}
trap restore EXIT

# Prints "name: action" per package from `--json` output, and fails unless every package
# ended with the action given.
expect_all() {
    "$PY" -c '
import json, sys
want, packages = sys.argv[1], json.load(sys.stdin)["packages"]
for p in packages:
    print("   %-11s %-8s %-8s %s" % (p["name"], p["version"], p["action"], p["signature"][:16]))
bad = [p["name"] for p in packages if p["action"] != want]
sys.exit(f"expected every package to be {want!r}; not: {bad}" if bad else 0)
' "$1"
}

step "1. Build: six (patched), markupsafe (C extension, CFLAGS), idna (plugin hooks)"
note "Sources are the pinned sdists on PyPI, checked against their published sha256."
started=$(date +%s%N)
bp build -j 2
elapsed=$(( ($(date +%s%N) - started) / 1000000 ))
note "took $((elapsed / 1000)).$(printf '%03d' $((elapsed % 1000))) s (a cold run builds all three; a warm one reuses them)"
note "wheels: $(cd "$DEMO/wheelhouse" && ls ./*.whl | xargs -n1 basename | tr '\n' ' ')"
"$PY" - "$DEMO/wheelhouse" <<'EOF'
import sys, zipfile, pathlib
house = pathlib.Path(sys.argv[1])
six = zipfile.ZipFile(next(house.glob("six-1.16.0-*.whl")))
assert b"__buildprint_patched__ = True" in six.read("six.py"), "six wheel lacks the patch"
ms = zipfile.ZipFile(next(house.glob("markupsafe-2.1.5-*.whl")))
so = [n for n in ms.namelist() if n.endswith(".so")]
assert so, "markupsafe wheel has no compiled extension"
print(f"   checked: six.py in the six wheel carries the patched line; markupsafe has {so[0]}")
print("   every wheel embeds its manifest as *.dist-info/buildprint.json")
EOF

step "2. Build again: nothing changed, so everything is reused"
bp build --json | expect_all reused

step "3. Change one line: CFLAGS -O2 -> -O3 in packages/markupsafe.toml"
sed -i 's/CFLAGS = "-O2"/CFLAGS = "-O3"/' "$SETTINGS"
note "now: $(grep "^env" "$SETTINGS")"
bp plan
step "   why markupsafe"
bp why markupsafe
cp "$BACKUP/markupsafe.toml" "$SETTINGS"
note "(change undone)"

step "4. Edit only a comment in plugins/idna_hooks.py: the plugin digest is AST-based"
printf '\n# A comment does not change what the hooks do, so it does not change the signature.\n' >>"$HOOKS"
bp plan --json | expect_all reuse
cp "$BACKUP/idna_hooks.py" "$HOOKS"
note "(change undone)"

step "5. Show one manifest: what went into idna's signature"
bp show idna

step "6. What markupsafe's last build read: the system headers it is checked against (discovered)"
bp audit markupsafe | awk 'NR == 1 { print } /^discovered system files/ { on = 1 } on && n < 10 { print; n++ }'
note "... (buildprint audit markupsafe -p examples/demo prints every group)"

step "Done. Try: buildprint why six -p examples/demo, buildprint audit markupsafe -p examples/demo"
