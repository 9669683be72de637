# shellcheck shell=bash
# The machine's cache folder, sourced by the scripts that keep something there. One folder per
# machine, shared by every clone, as CI systems keep their caches: RW_CACHE_DIR, default
# $XDG_CACHE_HOME/reprocessing-worker or ~/.cache/reprocessing-worker.
#
#   target/                   the debug and test builds of scripts/test.sh (CARGO_TARGET_DIR):
#                             clones share their compiled dependencies
#   target-static/            the dist builds of scripts/build-static.sh
#   venv/                     the services' Python tools: moto, tansu, librdkafka's wheel, …
#                             (scripts/services.sh)
#   venv-static/              cargo-zigbuild and Zig, pinned (scripts/build-static.sh)
#   target-fuzz/              the fuzz builds (scripts/fuzz.sh)
#   apache-kafka-<version>-*/ Apache Kafka's jars, pinned by kafka/pom.xml (scripts/services.sh)
#   maven-repository/         Maven's downloads for them
#
# Everything in it is made again when it is missing: delete the folder and the same commands
# install and build it all again.
RW_CACHE="${RW_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/reprocessing-worker}"
# The build directory of plain cargo commands: CARGO_TARGET_DIR when set, else the clone's.
RW_TARGET_DIR="${CARGO_TARGET_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target}"
