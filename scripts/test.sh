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
