#!/usr/bin/env bash
# The main job: set up, train the digits example locally with its gates, then serve the model.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
VENV=${CRUCIBLE_VENV:-.venv}
"$VENV/bin/crucible" train -f examples/trainingrun-digits.yaml
# Serve it on http://127.0.0.1:8080 (upload page at /, docs at /docs) until Ctrl+C or SIGTERM.
exec "$VENV/bin/crucible" serve --model runs/digits-mobilenet
