# SPDX-License-Identifier: GPL-2.0
# Shared settings for the bus1 harness scripts.  Source it, do not run it.
#
# Everything large (toolchain, kernel tree, build tree) lives under
# $BUS1_CACHE, outside the repository, so a fresh clone reuses it and
# rebuilds stay incremental.

set -euo pipefail

BUS1_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUS1_CACHE=${BUS1_CACHE:-$HOME/.cache/bus1}
TOOLS=$BUS1_CACHE/tools

# Kernel base: mainline 7.3 as shipped in Debian's linux-source-7.3.
KERNEL_SERIES=7.3
KERNEL_DEB_VERSION=${KERNEL_DEB_VERSION:-7.3.4-1~bpo13+1}
KERNEL_DEB_SHA256=${KERNEL_DEB_SHA256:-703e369ddd4cce971452f5a593ee55df3a5c10c83caf0fa0df039633ed181ee3}
KERNEL_DEB_SUITE=trixie-backports
BASE_TAG=bus1-base

# Pinned tool versions (each at or above the kernel's minimum).
BINDGEN_VERSION=0.73.2
LIBCLANG_VERSION=18.1.1
VIRTME_NG_VERSION=1.42

BINDGEN=$TOOLS/bindgen/bin/bindgen
LIBCLANG_DIR=$TOOLS/libclang/libclang-$LIBCLANG_VERSION.data/platlib/clang/native
VENV=$TOOLS/venv

# The kernel trees.  By default the base is Debian's tarball, unpacked into
# a git repository of our own.  KERNEL_SRC=<mainline checkout> uses the
# user's tree instead (shared-cloned, never modified), with caches of its
# own so that switching between the two never mixes build trees.
if [ -n "${KERNEL_SRC:-}" ]; then
	TREE_CACHE=$BUS1_CACHE/own-tree
else
	TREE_CACHE=$BUS1_CACHE
fi
KERNEL_GIT=$TREE_CACHE/linux
WORK_TREE=$TREE_CACHE/src
BUILD_DIR=${BUS1_BUILD_DIR:-$TREE_CACHE/build}

JOBS=${JOBS:-$(nproc)}

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Every kernel make needs exactly this toolchain: rustup's rustc comes first
# on PATH but has no library source, and bindgen must use libclang >= 17.
# KMAKE_ARGS: what a variant adds (build.sh reads it from "#make:" lines of
# the variant's config fragment, e.g. LLVM=-19).
KMAKE_ARGS=()
kmake() {
	make -C "$WORK_TREE" O="$BUILD_DIR" -j"$JOBS" \
		RUSTC=/usr/bin/rustc BINDGEN="$BINDGEN" \
		LIBCLANG_PATH="$LIBCLANG_DIR" ${KMAKE_ARGS[@]+"${KMAKE_ARGS[@]}"} "$@"
}

# Identity and date of the generated patch series: fixed, so that the
# series depends on the sources only.
SERIES_AUTHOR_NAME=${SERIES_AUTHOR_NAME:-bus1 developers}
SERIES_AUTHOR_EMAIL=${SERIES_AUTHOR_EMAIL:-bus1@example.org}
SERIES_DATE=${SERIES_DATE:-2026-11-23T12:00:00+00:00}
