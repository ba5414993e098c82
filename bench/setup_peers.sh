#!/usr/bin/env bash
# Install the benchmark's peers, each in its own virtualenv under bench/.venvs/,
# and the controller-side tools (locust, matplotlib) into the main python.
# Idempotent: a venv whose packages already import is left alone.
#
#   bash bench/setup_peers.sh            # everything
#   bash bench/setup_peers.sh classic    # only some peers (names below)
#
# Interpreters (the newest that each peer runs on; see bench/README.rst):
#   classic  chopsticks==1.0   3.11  (its agent `import imp`s: the remote
#                                     /usr/bin/python3 must be <= 3.11 too)
#   mitogen, parallel-ssh, fabric, asyncssh: the controller python (3.11)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[setup_peers] $*"; }

MAIN_PY="${CHOPSTICKS_PYTHON:-python3}"
PYENV_ROOT="${PYENV_ROOT:-$HOME/.pyenv}"
VENVS=bench/.venvs
PIP_FLAGS=(--disable-pip-version-check --no-input -q)

# name | interpreter | pip requirements | import check
PEERS=(
    "classic|3.11|chopsticks==1.0|import chopsticks.tunnel, chopsticks.group"
    "mitogen|3.11|mitogen==0.3.54|import mitogen.master, mitogen.utils"
    "pssh|3.11|parallel-ssh==2.16.0.post1|import pssh.clients"
    "fabric|3.11|fabric==3.2.3|import fabric"
    "asyncssh|3.11|asyncssh==2.24.1|import asyncssh"
)

interpreter() {
    local want="$1" cand
    # the controller's own python when it is that version, else pyenv's newest patch
    if "$MAIN_PY" -c "import sys; sys.exit(0 if '%d.%d' % sys.version_info[:2] == '$want' else 1)"; then
        "$MAIN_PY" -c 'import sys; print(sys.executable)'
        return
    fi
    for cand in $(ls -d "$PYENV_ROOT"/versions/"$want".* 2>/dev/null | sort -V -r); do
        if [ -x "$cand/bin/python" ]; then echo "$cand/bin/python"; return; fi
    done
    echo "no python $want (looked for the controller python and $PYENV_ROOT/versions/$want.*)" >&2
    return 1
}

setup_peer() {
    local spec="$1" name ver reqs check py venv
    IFS='|' read -r name ver reqs check <<<"$spec"
    venv="$VENVS/$name"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -I -c "$check" 2>/dev/null \
            && [ "$(cat "$venv/.requirements" 2>/dev/null)" = "$reqs" ]; then
        say "$name: ok ($("$venv/bin/python" -c 'import sys; print(sys.version.split()[0])'), $reqs)"
        return
    fi
    py="$(interpreter "$ver" | tail -n 1)"
    say "$name: venv with $py"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    "$venv/bin/python" -m pip install "${PIP_FLAGS[@]}" $reqs
    "$venv/bin/python" -I -c "$check"
    echo "$reqs" > "$venv/.requirements"
    say "$name: installed $reqs"
}

# The package that scenario 3 (import-heavy first call) imports remotely: one
# copy in its own directory, put first on sys.path by every runner that ships
# code (chopsticks, classic, mitogen), so all of them serve the same files.
IMPORT_PKG="trio==0.22.2"
setup_importpkg() {
    local dir="$VENVS/importpkg"
    if [ "$(cat "$dir/.requirements" 2>/dev/null)" = "$IMPORT_PKG" ] \
            && "$MAIN_PY" -I -c 'import sys; sys.path.insert(0, "'"$dir"'"); import trio' 2>/dev/null; then
        say "importpkg: ok ($IMPORT_PKG in $dir)"
        return
    fi
    rm -rf "$dir"
    "$MAIN_PY" -m pip install "${PIP_FLAGS[@]}" --target "$dir" "$IMPORT_PKG"
    echo "$IMPORT_PKG" > "$dir/.requirements"
    say "importpkg: installed $IMPORT_PKG into $dir"
}

setup_main() {
    if "$MAIN_PY" -c 'import locust, matplotlib' 2>/dev/null; then
        say "main python: locust and matplotlib present"
    else
        say "main python: pip install locust matplotlib (setup.cfg extra 'bench')"
        "$MAIN_PY" -m pip install "${PIP_FLAGS[@]}" 'locust>=2' matplotlib
    fi
}

mkdir -p "$VENVS"
wanted=("$@")
for spec in "${PEERS[@]}"; do
    name="${spec%%|*}"
    if [ "${#wanted[@]}" -eq 0 ] || [[ " ${wanted[*]} " == *" $name "* ]]; then
        setup_peer "$spec"
    fi
done
if [ "${#wanted[@]}" -eq 0 ] || [[ " ${wanted[*]} " == *" importpkg "* ]]; then
    setup_importpkg
fi
if [ "${#wanted[@]}" -eq 0 ] || [[ " ${wanted[*]} " == *" main "* ]]; then
    setup_main
fi
say "done"
