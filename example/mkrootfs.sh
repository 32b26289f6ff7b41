#!/bin/sh
# mkrootfs.sh DIR CONFINEMENT: a minimal root filesystem from busybox-static
# and the static confinement binary. Built from scratch every time, into a
# temporary directory renamed into place, so a failed build leaves nothing.
set -eu
dir=$1 confinement=$2
busybox=/bin/busybox # from busybox-static: it must run without the host's libraries
tmp=$(mktemp -d "$dir.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/etc" "$tmp/proc" "$tmp/sys" "$tmp/dev" "$tmp/tmp" "$tmp/run" "$tmp/var"
cp "$busybox" "$tmp/bin/busybox"
for applet in $("$busybox" --list); do
	[ "$applet" = busybox ] || ln -s busybox "$tmp/bin/$applet"
done
cp "$confinement" "$tmp/bin/confinement"
printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$tmp/etc/passwd"
printf 'root:x:0:\napp:x:1000:\nnogroup:x:65534:\n' >"$tmp/etc/group"
chmod 755 "$tmp"
chmod 1777 "$tmp/tmp"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
