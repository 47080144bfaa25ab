#!/usr/bin/env bash
# Set up (idempotent), lint, and run the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
VENV=${CRUCIBLE_VENV:-.venv}
# The real Kubernetes control plane for tests/cluster (etcd, kube-apiserver, ...): unpacked into
# .envtest/bin when the shared binaries are next to the project; without them those tests skip.
if [ -z "${KUBEBUILDER_ASSETS:-}" ] && [ -x ../shared/envtest/unpack.sh ]; then
  KUBEBUILDER_ASSETS=$(../shared/envtest/unpack.sh "$PWD/.envtest/bin")
  export KUBEBUILDER_ASSETS
fi
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest "$@"
# CI sets CRUCIBLE_SLOW_TESTS=1 to run the slow tests too, in a second pass: end-to-end loops on the
# real control plane and container image builds (pyproject.toml leaves them out of the default run).
if [ "${CRUCIBLE_SLOW_TESTS:-0}" = 1 ] && [ $# -eq 0 ]; then
  "$VENV/bin/python" -m pytest -m slow
fi
