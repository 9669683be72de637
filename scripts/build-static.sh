#!/usr/bin/env bash
# Builds the fully static reprocessing-worker that ships in the scratch image, for Linux on
# x86-64 or arm64 (musl), from this x86-64 machine, installing what it needs. Prints each
# binary's path on stdout, one a line in the order of the targets (everything else goes to
# stderr).
#   scripts/build-static.sh                                      x86_64-unknown-linux-musl
#   scripts/build-static.sh --target aarch64-unknown-linux-musl  arm64 (Graviton, Ampere)
#   scripts/build-static.sh --target A --target B                both, in one cargo build: the
#                                                                targets' fat-LTO links, each on
#                                                                one core, run side by side
#
# Profile: `dist` (Cargo.toml), the release build stripped of symbols and line tables (about
# 15 to 18 MB instead of 93 MB). Plain release builds keep their line tables for profiling.
#
# Route: cargo-zigbuild, with Zig (the `ziglang` PyPI wheel) as the C compiler and linker for
# both targets. The C parts of the tree (aws-lc-sys, zstd-sys, libmimalloc-sys) are then
# compiled against musl's own headers for the target CPU, which Zig ships for every target,
# and linked with musl's libc: the C library the binary really has. Both tools come from PyPI
# as prebuilt wheels (`cargo-zigbuild`, `ziglang`; about 12 s to install) into a virtual
# environment of their own in the machine's cache folder (RW_VENV to choose another): nothing
# to compile, and the same on x86-64 and arm64 build machines. Measured on 2 shared cores: a clean dist build takes about 15
# minutes for either target (rustc and fat LTO dominate, not the C compiler), and
# one source change costs about 4 minutes per target.
# Tried as well: Debian's cross gcc (gcc-aarch64-linux-gnu), as Dockerfile.musl used to. It
# built a binary that ran the static test's job, but it compiles the C parts against glibc's
# headers and links them with musl: sizes of types such as pthread_mutex_t and some constants
# differ between the two, and nothing at link time says so. A correct build that way needs
# musl's arm64 headers as well (Debian: musl-dev:arm64, a foreign architecture for apt).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGETS=()
while (($#)); do
  case "$1" in
    --target) TARGETS+=("${2:?--target needs a value}"); shift 2 ;;
    --target=*) TARGETS+=("${1#--target=}"); shift ;;
    -h|--help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
((${#TARGETS[@]})) || TARGETS=(x86_64-unknown-linux-musl)
for TARGET in "${TARGETS[@]}"; do
  case "$TARGET" in
    x86_64-unknown-linux-musl|aarch64-unknown-linux-musl) ;;
    *) echo "unsupported target $TARGET (x86_64-unknown-linux-musl or aarch64-unknown-linux-musl)" >&2; exit 2 ;;
  esac
done

# Versions tested together; a newer Zig can change what cargo-zigbuild relies on.
CARGO_ZIGBUILD_VERSION=0.24.1
ZIGLANG_VERSION=0.17.1

apt_missing=()
command -v file >/dev/null 2>&1 || apt_missing+=(file)
command -v python3 >/dev/null 2>&1 || apt_missing+=(python3 python3-venv)
if ((${#apt_missing[@]})) || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${apt_missing[@]}" python3-venv >&2
fi

for TARGET in "${TARGETS[@]}"; do
  rustup target list --installed 2>/dev/null | grep -qx "$TARGET" || rustup target add "$TARGET" >&2
done

# The tools' venv and the dist builds' target directory live in the machine's cache folder
# (scripts/cache.sh), at paths that do not change from clone to clone: the linker (Zig) is part
# of every crate's fingerprint, so a venv inside the clone would rebuild every dependency.
source scripts/cache.sh
VENV="${RW_VENV:-$RW_CACHE/venv-static}"
if ! { [[ -x "$VENV/bin/python3" ]] && "$VENV/bin/python3" -m pip --version >/dev/null 2>&1; }; then
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv --clear "$VENV" >&2
fi
if [[ "$("$VENV/bin/cargo-zigbuild" --version 2>/dev/null)" != "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" ]] \
  || [[ "$("$VENV/bin/python3" -m ziglang version 2>/dev/null)" != "$ZIGLANG_VERSION" ]]; then
  echo "pip install (into $VENV) cargo-zigbuild==$CARGO_ZIGBUILD_VERSION ziglang==$ZIGLANG_VERSION" >&2
  "$VENV/bin/python3" -m pip install -q --disable-pip-version-check \
    "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION" "ziglang==$ZIGLANG_VERSION" >&2
fi
# The wheel's zig, named outright: cargo-zigbuild would otherwise take any `zig` on PATH first.
CARGO_ZIGBUILD_ZIG_PATH="$("$VENV/bin/python3" -c 'import pathlib, ziglang; print(pathlib.Path(ziglang.__file__).with_name("zig"))')"
export CARGO_ZIGBUILD_ZIG_PATH
export PATH="$VENV/bin:$PATH"

export CARGO_TARGET_DIR="${RW_STATIC_TARGET_DIR:-$RW_CACHE/target-static}"
mkdir -p "$CARGO_TARGET_DIR"
cargo zigbuild --profile dist --locked "${TARGETS[@]/#/--target=}" --bin reprocessing-worker >&2
for TARGET in "${TARGETS[@]}"; do
  echo "$CARGO_TARGET_DIR/$TARGET/dist/reprocessing-worker"
done
