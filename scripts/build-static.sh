#!/usr/bin/env bash
# Builds a fully static reprocessing-worker for x86_64 Linux (musl), installing what it
# needs: the rustup target and Debian's musl-tools for the C parts (aws-lc, zstd, mimalloc).
# Prints the binary's path on stdout.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET=x86_64-unknown-linux-musl
rustup target list --installed 2>/dev/null | grep -qx "$TARGET" || rustup target add "$TARGET" >&2
if ! command -v musl-gcc >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 && apt-get install -y -qq musl-tools >&2
fi
command -v file >/dev/null 2>&1 || apt-get install -y -qq file >&2
cargo build --release --locked --target "$TARGET" --bin reprocessing-worker >&2
echo "$PWD/target/$TARGET/release/reprocessing-worker"
