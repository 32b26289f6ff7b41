#!/bin/sh
# /init of the safe-run test guest, run by busybox sh as PID 1.
#
# Stage 1 runs from the initramfs; stage 2 (`/init stage2`) from a tmpfs copy
# of it. The copy exists because runc's libcontainer pivot_roots into the
# container, and pivot_root(2) fails with EINVAL when the current root is the
# initramfs (rootfs cannot be unmounted; see pivot_root(2) and
# Documentation/filesystems/ramfs-rootfs-initramfs.rst).
#
# Anything that goes wrong powers the machine off without the exit marker;
# the host then reports the console tail.

export PATH=/usr/sbin:/usr/bin:/sbin:/bin
conf=/etc/safe-run-guest

die() {
	echo "safe-run-guest init: $*" >&2
	poweroff -f
	sleep 60
}

if [ "$1" != stage2 ]; then
	mount -t proc -o nosuid,nodev,noexec proc /proc || die "mounting /proc"
	mount -t sysfs -o nosuid,nodev,noexec sysfs /sys || die "mounting /sys"
	mount -t devtmpfs -o nosuid,mode=0755 devtmpfs /dev || die "mounting /dev"

	# Dependencies first; the host wrote them in that order.
	while read -r m; do
		insmod "/lib/modules/$m.ko" || die "loading module $m"
	done <"$conf/modules"

	mkdir /newroot
	mount -t tmpfs -o mode=0755 tmpfs /newroot || die "mounting the new root"
	for e in /* /.[!.]*; do
		case "$e" in
		/proc | /sys | /dev | /newroot | '/.[!.]*') ;; # unmatched glob stays literal
		*) cp -a "$e" /newroot/ || die "copying $e to the new root" ;;
		esac
	done
	for m in proc sys dev; do
		mkdir -p "/newroot/$m"
		mount --move "/$m" "/newroot/$m" || die "moving /$m"
	done
	# switch_root empties the initramfs (freeing its memory), chroots and
	# execs; it refuses unless the new root is a mount point.
	exec switch_root /newroot /init stage2
	die "switch_root failed"
fi

# Pure cgroup v2, delegating like systemd does (nsdelegate: a cgroup
# namespace is a delegation boundary). cgroup_no_v1=all on the kernel
# command line keeps every controller free for this hierarchy.
mount -t cgroup2 -o nosuid,nodev,noexec,nsdelegate cgroup2 /sys/fs/cgroup || die "mounting cgroup2"
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
	echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control || die "enabling cgroup controller $c"
done
# apparmor_parser loads profiles through securityfs.
mount -t securityfs -o nosuid,nodev,noexec securityfs /sys/kernel/security || die "mounting securityfs"
mkdir -p /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o nosuid,noexec,newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts || die "mounting /dev/pts"
ln -sf pts/ptmx /dev/ptmx
mount -t tmpfs -o nosuid,nodev,mode=1777 shm /dev/shm || die "mounting /dev/shm"
mount -t mqueue -o nosuid,nodev,noexec mqueue /dev/mqueue || die "mounting /dev/mqueue"
mount -t tmpfs -o nosuid,nodev,mode=1777 tmpfs /tmp || die "mounting /tmp"
mount -t tmpfs -o nosuid,nodev,mode=0755 tmpfs /run || die "mounting /run"
ip link set lo up || die "bringing up lo"
hostname safe-run-guest

nonce=$(cat "$conf/nonce")
echo "SAFE_RUN_GUEST_READY=$nonce"
cd / && env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/tmp TERM=dumb \
	/bin/sh "$conf/script" </dev/null
status=$?
sync
echo "SAFE_RUN_GUEST_EXIT=$nonce:$status"
poweroff -f
