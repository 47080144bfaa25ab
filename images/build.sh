#!/usr/bin/env bash
# Build every Crucible image, tagged with the project version (pyproject.toml):
#   crucible-operator, crucible-trainer, crucible-server, and with --cuda their -cuda variants.
#   images/build.sh [--base IMAGE] [--cuda] [--only operator|trainer|server] [--push REGISTRY/]
# Environment: TORCH_CPU_INDEX, TORCH_CUDA_INDEX (wheel indexes for the two torch builds; empty: the
# default index), PIP_CERT (a CA bundle the build needs to reach the package index; default: the
# system bundle). The bundle is copied to images/.build/ (git-ignored) and used only in the build
# stage, so it never ships. Plain `docker build`: works without BuildKit or buildx.
set -euo pipefail
cd "$(dirname "$0")/.."

base=python:3.11-slim
cuda=false
only=""
registry=""
usage="usage: images/build.sh [--base IMAGE] [--cuda] [--only operator|trainer|server] [--push REGISTRY/]"
while [ $# -gt 0 ]; do
    case "$1" in
        --base) base=$2; shift 2 ;;
        --cuda) cuda=true; shift ;;
        --only) only=$2; shift 2 ;;
        --push) registry=${2%/}/; shift 2 ;;
        *) echo "$usage" >&2; exit 2 ;;
    esac
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
cert=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
mkdir -p images/.build
echo '*' > images/.build/.gitignore
if [ -s "$cert" ]; then cp "$cert" images/.build/ca-bundle.crt; else : > images/.build/ca-bundle.crt; fi
# The host network: the build reaches the package index the way this host does.
common=(--network host --build-arg "BASE_IMAGE=$base")

build() {  # build NAME TAG DOCKERFILE [ARGS...]
    local name=$1 tag=$2 file=$3
    shift 3
    if [ -n "$only" ] && [ "$only" != "$name" ]; then return; fi
    docker build "${common[@]}" -f "$file" -t "${registry}${tag}:${version}" "$@" .
    if [ -n "$registry" ]; then docker push "${registry}${tag}:${version}"; fi
}

build operator crucible-operator images/Dockerfile.operator
# Trainer pods also report to tuning studies (optuna, grpcio): the trainer image gets both extras.
for target in train,tune serve; do
    name=$([ "$target" = serve ] && echo server || echo trainer)
    build "$name" "crucible-$name" images/Dockerfile.runtime --build-arg "TARGET=$target" \
        --build-arg VARIANT=cpu --build-arg "TORCH_INDEX=${TORCH_CPU_INDEX:-}"
    if $cuda; then
        build "$name" "crucible-$name-cuda" images/Dockerfile.runtime --build-arg "TARGET=$target" \
            --build-arg VARIANT=cuda --build-arg "TORCH_INDEX=${TORCH_CUDA_INDEX:-}"
    fi
done
