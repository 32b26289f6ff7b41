// Package guest boots a Debian 12 kernel in QEMU and runs a shell script in
// it as root, for tests of what the host kernel cannot show.
//
// # Why
//
// safe-run must be proven where its users run it: a kernel with AppArmor
// enabled and a pure cgroup v2 hierarchy with every controller delegated.
// The development and CI machines have neither (no AppArmor, hybrid cgroups
// with the controllers on v1), and a test cannot change the host kernel's
// LSMs or cgroup mode. So tests that need them boot Debian's own
// linux-image-6.1.0-*-amd64 under QEMU with a root filesystem made of
// busybox, apparmor_parser and the test's static binaries, with:
//
//   - AppArmor enabled and securityfs at /sys/kernel/security;
//   - cgroup2 alone at /sys/fs/cgroup (nsdelegate, cgroup_no_v1=all), all
//     controllers enabled in the root's cgroup.subtree_control;
//   - a tmpfs root (so pivot_root works), /tmp, /run, /dev/pts, /dev/shm
//     and loopback up; overlayfs loaded; no other network.
//
// # Cost
//
// QEMU runs with TCG (software emulation), never KVM, so it behaves the
// same on every machine. A boot to the script takes about 4 s on a 2-core
// machine, plus about 2 s on the host to ask apt for the kernel and build
// the initramfs; code in the guest runs several times slower than on the
// host. The first run downloads the kernel package once (about 70 MB,
// unpacked to about 470 MB in CacheDir). Guest tests therefore do not run
// with -short, and each should boot once and check many things.
//
// # Host packages
//
// On Debian 12, after apt-get update:
//
//	apt-get install -y qemu-system-x86 busybox-static apparmor xz-utils gcc libseccomp-dev
//
// qemu-system-x86 boots the guest, busybox-static is its userland,
// apparmor provides apparmor_parser and its policy files, xz-utils unpacks
// the kernel for a faster PVH boot (optional: without it the compressed
// kernel boots, about 4 s slower), gcc and libseccomp-dev let BuildStatic
// link cgo and libseccomp statically. The kernel comes from the apt lists
// with apt-get download, so no cpio tool is needed: the initramfs is written
// here. Anything missing is an error matching ErrUnavailable that names the
// package to install.
//
// # Use from other packages' tests
//
// Build what the guest should run as static binaries, pass them in Files,
// and check inside the script; the script's exit status comes back from Run:
//
//	func TestAppArmorInGuest(t *testing.T) {
//		if testing.Short() {
//			t.Skip("boots a QEMU guest (about 10 s); not with -short")
//		}
//		if err := guest.Check(); err != nil {
//			skipOrFail(t, err) // t.Fatal if SAFE_RUN_REQUIRE_PRIV=1, else t.Skip
//		}
//		bin := filepath.Join(t.TempDir(), "safe-run")
//		err := guest.BuildStatic(ctx, "github.com/safe-run/safe-run/cmd/safe-run", bin, "seccomp")
//		...
//		status, err := guest.Run(ctx, guest.Options{
//			Files:  map[string]string{"/usr/bin/safe-run": bin, "/srv/web": "testdata/web"},
//			Script: "safe-run /srv/web/service.toml",
//			Stdout: t.Output(),
//		})
//	}
//
// BuildStatic runs the equivalent of
//
//	CGO_ENABLED=1 go build -tags 'seccomp netgo osusergo' -ldflags '-extldflags -static'
//
// which links /usr/lib/x86_64-linux-gnu/libseccomp.a into the binary.
package guest
