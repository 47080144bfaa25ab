#!/usr/bin/env bash
# Set up (idempotent), lint, and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
VENV=${CRUCIBLE_VENV:-.venv}
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest "$@"
