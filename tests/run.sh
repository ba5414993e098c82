#!/usr/bin/env bash
# Install the test requirements, then run the whole test suite.
#   bash tests/run.sh [extra pytest args]
# sshd and dockerd are started by pytest session fixtures (tests/fleet).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
exec "${CHOPSTICKS_PYTHON:-python3}" -m pytest tests -q -rs "$@"
