#!/bin/sh
# mkrootfs.sh NAME PACKAGE...: a Debian 12 (bookworm) root filesystem with
# the essential packages and PACKAGE..., built by mmdebstrap, cached, and its
# path printed on standard output (progress goes to standard error).
#
# The cache entry is keyed by what decides its contents: the suite, the
# architecture, the sorted package list and this script's version (bump
# VERSION whenever a change here changes what is built). NAME is only for
# people: it names a symlink NAME -> KEY beside the entries and the build's
# log lines. Layout, under $SAFE_RUN_ROOTFS_CACHE
# (default /var/cache/safe-run/rootfs):
#
#	KEY/rootfs     the root filesystem, never modified once in place
#	KEY/info       how it was built: suite, architecture, packages, mirrors
#	KEY/packages   every installed package and version (dpkg-query)
#	NAME -> KEY    the entry last built or reused under that name
#	.KEY.lock      held while KEY is built, so concurrent builds wait
#
# An entry is built in a temporary directory beside the cache and renamed
# into place only when complete: there is never a partial entry, and a
# failed or interrupted build leaves only a temporary directory that the
# next build of the same key removes. An entry keeps the package versions
# of the day it was built: to take newer ones (security updates), remove
# it (rm -rf CACHE/KEY) and build again.
#
# Packages come from the Debian archive the host's apt uses (its
# bookworm, bookworm-updates and bookworm-security sources), so the build
# works wherever apt does; MIRROR and SECURITY_MIRROR override them.
# Must run as root (mmdebstrap's root mode keeps the packages' owners).
# Exit status: 0 built or reused, 3 the archive cannot be reached, 1 or 2
# any other failure.
set -eu

VERSION=2
SUITE=bookworm

usage() { echo "usage: $0 NAME PACKAGE..." >&2; exit 2; }
[ $# -ge 2 ] || usage
name=$1; shift
case $name in
	*/* | .* | '') echo "$0: NAME \"$name\" must be a plain file name (e.g. nginx)" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
	echo "$0: must run as root: mmdebstrap keeps the packages' file owners only as root" >&2
	exit 1
fi
command -v mmdebstrap >/dev/null || { echo "$0: needs mmdebstrap (apt-get install mmdebstrap)" >&2; exit 1; }

arch=$(dpkg --print-architecture)
packages=$(printf '%s\n' "$@" | LC_ALL=C sort -u | tr '\n' ' ' | sed 's/ $//')
for p in $packages; do
	case $p in
		-* | *[!a-z0-9.+:=~-]*) echo "$0: \"$p\" is not a Debian package name" >&2; exit 2 ;;
	esac
done
key=$SUITE-$arch-$(printf 'safe-run-debian-rootfs v%s\n%s\n%s\n%s\n' "$VERSION" "$SUITE" "$arch" "$packages" |
	sha256sum | cut -c1-16)

cache=${SAFE_RUN_ROOTFS_CACHE:-/var/cache/safe-run/rootfs}
mkdir -p "$cache"
chmod 755 "$cache"

publish() {
	ln -sfn "$key" "$cache/.$name.link.$$"
	mv -T "$cache/.$name.link.$$" "$cache/$name"
	echo "$cache/$key/rootfs"
}

if [ -d "$cache/$key/rootfs" ]; then
	publish
	exit 0
fi

# The lock is on a file descriptor of this shell: released however it exits.
exec 9>"$cache/.$key.lock"
if ! flock -n 9; then
	echo "$name: waiting for another build of $key" >&2
	flock 9
fi
if [ -d "$cache/$key/rootfs" ]; then # built while we waited
	publish
	exit 0
fi
# What an interrupted build left. mmdebstrap mounts /proc, /sys and /dev
# inside the tree while it builds: a build killed outright can leave them
# mounted, and rm must never descend into them.
if grep -qF " $cache/.$key.tmp." /proc/self/mountinfo; then
	echo "$0: mounts are left under $cache/.$key.tmp.*, from a build killed outright; unmount them (umount -R) and run again" >&2
	exit 1
fi
rm -rf --one-file-system "$cache/.$key.tmp."*

# The host's apt sources for the Debian archive: the same mirror, proxy
# and reachability as `apt-get install` here.
host_uri() {
	apt-get indextargets --format '$(LABEL) $(REPO_URI)' 2>/dev/null |
		awk -v l="$1" '$1 == l { print $2; exit }'
}
mirror=${MIRROR:-$(host_uri Debian)}
mirror=${mirror:-http://deb.debian.org/debian/}
security=${SECURITY_MIRROR:-$(host_uri Debian-Security)}
security=${security:-http://deb.debian.org/debian-security/}

tmp=$(mktemp -d "$cache/.$key.tmp.XXXXXX")
trap 'rm -rf --one-file-system "$tmp"' EXIT
trap 'exit 130' INT TERM HUP

# Exit status 3 says the archive cannot be reached (the test helper skips
# on it outside CI); apt's own downloader goes through apt's proxy settings.
if ! /usr/lib/apt/apt-helper -o APT::Sandbox::User=root -o Acquire::Retries=1 download-file "${mirror%/}/dists/$SUITE/InRelease" "$tmp/InRelease" >"$tmp/probe.log" 2>&1; then
	echo "$0: cannot reach the Debian archive at $mirror (set MIRROR to one this host reaches):" >&2
	cat "$tmp/probe.log" >&2
	exit 3
fi
rm -f "$tmp/InRelease" "$tmp/probe.log"

sources="$tmp/sources"
cat >"$sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

echo "$name: building $key ($packages) from $mirror" >&2
start=$(date +%s)
# essential: Essential: yes packages and their dependencies, no apt; the
# requested packages are installed by the host's apt into the target.
# Documentation, manual pages and translations are never unpacked
# (copyright files are kept), and no Recommends are installed. The
# merged-usr hook makes /bin, /lib, /sbin links into /usr as bookworm's
# init-system-helpers wants, without the usrmerge package, which would
# pull in perl (25 MB). Setuid and setgid bits are cleared: services run
# with no_new_privileges, where they do nothing but draw safe-run's
# setuid check.
# shellcheck disable=SC2086 # $packages is a list of checked names
mmdebstrap --quiet --mode=root --variant=essential --architectures="$arch" \
	--include="$(echo $packages | tr ' ' ,)" \
	--aptopt='APT::Install-Recommends "false"' \
	--aptopt='APT::Install-Suggests "false"' \
	--dpkgopt='path-exclude=/usr/share/doc/*' \
	--dpkgopt='path-include=/usr/share/doc/*/copyright' \
	--dpkgopt='path-exclude=/usr/share/man/*' \
	--dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' \
	--dpkgopt='path-exclude=/usr/share/lintian/*' \
	--dpkgopt='path-exclude=/usr/share/linda/*' \
	--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
	--customize-hook='rm -f "$1/etc/hostname" "$1/etc/resolv.conf"' \
	--customize-hook='find "$1" -xdev -type f -perm /6000 -exec chmod ug-s {} +' \
	"$SUITE" "$tmp/rootfs" "$sources" >&2

chroot "$tmp/rootfs" dpkg-query -W -f '${Package} ${Version}\n' >"$tmp/packages"
cat >"$tmp/info" <<EOF
name: $name
key: $key
script-version: $VERSION
suite: $SUITE
architecture: $arch
packages: $packages
mirror: $mirror
security-mirror: $security
built: $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(($(date +%s) - start))s
size: $(du -sh "$tmp/rootfs" | cut -f1)
EOF
rm -f "$sources"
chmod 755 "$tmp" "$tmp/rootfs"
sync -f "$tmp/rootfs"
mv -T "$tmp" "$cache/$key"
trap - EXIT
echo "$name: built $key in $(($(date +%s) - start))s, $(du -sh "$cache/$key/rootfs" | cut -f1)" >&2
publish
