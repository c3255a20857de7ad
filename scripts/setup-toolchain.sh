#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Install everything needed to build and boot a Rust-enabled kernel.
# Idempotent: each step checks first and is skipped when already done.
. "$(dirname "$0")/lib.sh"

DEB_PACKAGES=(
	rustc-web rust-web-src rust-web-clippy rustfmt-web
	gcc make bc flex bison libelf-dev libssl-dev cpio xz-utils git
	python3-venv python3-pip
	qemu-system-x86 busybox-static udev strace kmod groff-base
	gcc-multilib python3-ply
	clang-19 lld-19 llvm-19
	# Watching and filtering: BTF (pahole), perf (Debian's, and the build
	# of the patched tree's), bpftrace, BPF LSM programs, libseccomp.
	dwarves linux-perf libtraceevent-dev pkgconf bpftrace bpftool libbpf-dev
	libseccomp-dev
)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	log "installing Debian packages: ${missing[*]}"
	[ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The kernel's Rust build needs core's source next to the exact rustc.
[ -x /usr/bin/rustc ] || die "/usr/bin/rustc missing (rustc-web)"
sysroot=$(/usr/bin/rustc --print sysroot)
[ -d "$sysroot/lib/rustlib/src/rust/library/core" ] ||
	die "no Rust library source under $sysroot (rust-web-src)"

mkdir -p "$TOOLS"

if ! "$BINDGEN" --version 2>/dev/null | grep -q "$BINDGEN_VERSION"; then
	log "installing bindgen-cli $BINDGEN_VERSION (from crates.io)"
	cargo install --quiet --locked --root "$TOOLS/bindgen" \
		bindgen-cli --version "$BINDGEN_VERSION"
fi

if [ ! -f "$LIBCLANG_DIR/libclang.so" ]; then
	log "fetching libclang $LIBCLANG_VERSION (PyPI wheel)"
	tmp=$(mktemp -d)
	python3 -m pip download -q --no-deps --only-binary=:all: \
		--platform manylinux2010_x86_64 \
		"libclang==$LIBCLANG_VERSION" -d "$tmp"
	rm -rf "$TOOLS/libclang"
	python3 -m zipfile -e "$tmp"/libclang-"$LIBCLANG_VERSION"-*.whl "$TOOLS/libclang"
	rm -rf "$tmp"
	[ -f "$LIBCLANG_DIR/libclang.so" ] || die "libclang.so not found in wheel"
fi

if ! "$VENV/bin/vng" --version 2>/dev/null | grep -q "$VIRTME_NG_VERSION"; then
	log "installing virtme-ng $VIRTME_NG_VERSION (PyPI, venv)"
	python3 -m venv "$VENV"
	"$VENV/bin/pip" install -q "virtme-ng==$VIRTME_NG_VERSION"
fi

log "toolchain ready: $(/usr/bin/rustc --version), bindgen $("$BINDGEN" --version | awk '{print $2}'), libclang $LIBCLANG_VERSION, vng $VIRTME_NG_VERSION"
