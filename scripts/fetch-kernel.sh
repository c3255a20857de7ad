#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Provide the mainline base tree as a git repository with the base commit
# tagged $BASE_TAG.
#
# Default: Debian's linux-source-$KERNEL_SERIES binary package (pinned version,
# checksum verified; the newest $KERNEL_SERIES.x when the pin has left the
# archive), unpacked once into $BUS1_CACHE/linux.
# KERNEL_SRC=<mainline checkout>: the user's tree, shared-cloned; its HEAD at
# the first run is the base (remove $BUS1_CACHE/own-tree to take a new one).
. "$(dirname "$0")/lib.sh"

if git -C "$KERNEL_GIT" rev-parse -q --verify "refs/tags/$BASE_TAG" >/dev/null 2>&1; then
	exit 0
fi

if [ -n "${KERNEL_SRC:-}" ]; then
	git -C "$KERNEL_SRC" rev-parse --verify HEAD >/dev/null 2>&1 ||
		die "KERNEL_SRC=$KERNEL_SRC is not a git checkout"
	[ -f "$KERNEL_SRC/scripts/syscall.tbl" ] || die "KERNEL_SRC does not look like a kernel tree"
	log "using $KERNEL_SRC at $(git -C "$KERNEL_SRC" describe --always HEAD) as base"
	rm -rf "$KERNEL_GIT"
	git clone -q --shared --no-checkout "$KERNEL_SRC" "$KERNEL_GIT"
	git -C "$KERNEL_GIT" config gc.auto 0
	git -C "$KERNEL_GIT" tag "$BASE_TAG" "$(git -C "$KERNEL_SRC" rev-parse HEAD)"
	exit 0
fi

# A private apt state: the system's sources are neither read nor changed.
apt_dir=$BUS1_CACHE/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$BUS1_CACHE/dl"
cat >"$apt_dir/sources.list" <<EOF
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $KERNEL_DEB_SUITE main
EOF
APT=(-o Dir::Etc::sourcelist="$apt_dir/sources.list" -o Dir::Etc::sourceparts=-
	-o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache="$apt_dir/cache"
	-o Debug::NoLocking=1 -o APT::Sandbox::User=root -o APT::Get::List-Cleanup=0)

log "reading $KERNEL_DEB_SUITE package index"
apt-get "${APT[@]}" -qq update

pkg=linux-source-$KERNEL_SERIES
version=$KERNEL_DEB_VERSION
if ! apt-cache "${APT[@]}" show "$pkg=$version" >/dev/null 2>&1; then
	version=$(apt-cache "${APT[@]}" madison "$pkg" | awk '{print $3; exit}')
	[ -n "$version" ] || die "$pkg is not in $KERNEL_DEB_SUITE"
	log "pinned $pkg $KERNEL_DEB_VERSION is gone; falling back to $version"
	KERNEL_DEB_SHA256=
fi
# apt verifies the download against the signed index; we additionally check
# the pinned checksum so that the base cannot change under us silently.
index_sha=$(apt-cache "${APT[@]}" show "$pkg=$version" | awk '/^SHA256:/ {print $2; exit}')
[ -z "$KERNEL_DEB_SHA256" ] || [ "$index_sha" = "$KERNEL_DEB_SHA256" ] ||
	die "$pkg $version: index SHA256 $index_sha != pinned $KERNEL_DEB_SHA256"

log "downloading $pkg $version"
(cd "$BUS1_CACHE/dl" && apt-get "${APT[@]}" -qq download "$pkg=$version")
deb=$(ls "$BUS1_CACHE/dl/${pkg}_"*.deb | head -n1)
echo "$index_sha  $deb" | sha256sum -c --quiet || die "checksum mismatch for $deb"

log "unpacking the kernel tree"
tmp=$(mktemp -d "$BUS1_CACHE/unpack.XXXX")
dpkg -x "$deb" "$tmp"
rm -rf "$KERNEL_GIT"
mkdir -p "$KERNEL_GIT"
tar -C "$KERNEL_GIT" --strip-components=1 -xf "$tmp/usr/src/$pkg.tar.xz"
rm -rf "$tmp"

cd "$KERNEL_GIT"
kver=$(make -s kernelversion)
# Debian's top-level .gitignore ends in "/*": it would hide the whole tree.
git init -q -b base
git config gc.auto 0
git config core.autocrlf false
git add -A -f
GIT_AUTHOR_DATE=$SERIES_DATE GIT_COMMITTER_DATE=$SERIES_DATE \
	git -c user.name="bus1 harness" -c user.email=bus1@localhost \
	commit -q -m "Linux $kver (Debian $pkg $version)"
git tag "$BASE_TAG"
log "kernel base: Linux $kver (Debian $pkg $version), tagged $BASE_TAG"
