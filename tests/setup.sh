#!/usr/bin/env bash
# Install what the test suite needs.  Idempotent; safe with CI=true and no stdin.
# Run as root on Debian 12:  bash tests/setup.sh
#
# The services themselves (sshd, dockerd) are NOT started here: the pytest
# session fixtures in tests/fleet start private instances and stop them.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[setup] $*"; }

APT_PACKAGES=(openssh-server openssh-client docker.io sudo iproute2 procps)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        say "missing packages ${missing[*]} and not root: cannot install them" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # Keep package scripts from starting the system's sshd/dockerd: the tests
    # run their own.  (policy-rc.d exit code 101 = "action forbidden".)
    policy=/usr/sbin/policy-rc.d
    own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod 755 "$policy"
        own_policy=1
        trap 'if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi' EXIT
    fi
    say "apt-get update"
    apt-get update -q
    say "apt-get install ${missing[*]}"
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
    if [ "$own_policy" = 1 ]; then rm -f "$policy"; own_policy=0; fi
else
    say "apt packages present: ${APT_PACKAGES[*]}"
fi

PY="${CHOPSTICKS_PYTHON:-python3}"
say "python: $(command -v "$PY") ($("$PY" -c 'import sys; print(sys.version.split()[0])'))"
PIP=("$PY" -m pip install --disable-pip-version-check --no-input -q)

if [ -f setup.cfg ] || [ -f pyproject.toml ] || [ -f setup.py ]; then
    say "pip install -e '.[test,ssh,docker]'"
    "${PIP[@]}" -e '.[test,ssh,docker]'
else
    # No packaging metadata yet: install what tests/fleet and pytest need.
    say "no setup.cfg yet; pip install pytest docker (skipping the editable install)"
    "$PY" -c 'import pytest, docker' 2>/dev/null || "${PIP[@]}" pytest docker
fi

say "done"
