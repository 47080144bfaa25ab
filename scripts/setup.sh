#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install Crucible with its
# development extras. Safe to run again: it only installs what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${CRUCIBLE_VENV:-.venv}
PYTHON=${PYTHON:-python3}

# `-I` keeps the current directory off sys.path: the repository's `operator/` folder (mapped to
# `crucible.operator`) must never shadow the standard library's `operator` module.
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -I -m venv "$VENV"
fi
pip() { "$VENV/bin/python" -I -m pip --disable-pip-version-check "$@"; }

# torch is pinned to the release this project is tested with; it is large, so it goes first and
# alone (a no-op when already installed).
if ! "$VENV/bin/python" -c "import torch, torchvision, sys; sys.exit(torch.__version__.split('+')[0] != '2.14.1')" 2>/dev/null; then
    pip install -q torch==2.14.1 torchvision==0.29.1
fi

# Re-install the project only when its metadata changed.
stamp="$VENV/.crucible-installed"
digest=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    pip install -q -e ".[dev]"
    echo "$digest" > "$stamp"
fi
./scripts/fetch-tools.sh
./scripts/install-browser.sh
