#!/usr/bin/env bash
# Runs every test: unit and property tests, the end-to-end tests on the real services, and
# the extra suites that exist. Installs and starts what is missing. Fails if any test fails.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n=== %s\n' "$*"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo is required" >&2; exit 1; }
cargo --version

step "services (PostgreSQL 15, tansu, moto)"
scripts/services.sh start
eval "$(scripts/services.sh env)"

step "build"
cargo build --all-targets --locked 2>&1 | tail -n 3

step "unit, property and end-to-end tests"
cargo test --locked --lib --bins --tests -- --test-threads 4

step "benches compile"
cargo bench --locked --no-run 2>&1 | tail -n 2

for extra in scripts/faults.sh scripts/fuzz.sh scripts/static-test.sh; do
  if [[ -x "$extra" ]]; then
    step "$extra"
    "$extra"
  fi
done

step "all tests passed"
