#!/usr/bin/env bash
# Builds the scratch image from Dockerfile.musl for amd64 and arm64 and pushes it.
#   IMAGE=registry.example.com/jitsu/reprocessing-worker:1.0 scripts/reprocessing-worker-build.sh
# Needs a Docker engine with buildx (not available on the project's CI machines, which test
# what the image contains instead: see scripts/static-test.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
IMAGE="${IMAGE:-jitsucom/reprocessing-worker:latest}"
PLATFORMS="${PLATFORMS:-linux/amd64,linux/arm64}"
docker buildx build -f Dockerfile.musl --platform "$PLATFORMS" -t "$IMAGE" --push .
echo "pushed $IMAGE ($PLATFORMS)"
