// Package landlock is the stage of safe-run beside apparmor: it generates
// the Landlock ruleset of each service from its validated manifest and the
// mounts of its spec, at the Landlock ABI the kernel has.
//
// Landlock is an unprivileged LSM: any process may restrict itself and its
// future children, so it confines a service where AppArmor is absent (an
// SELinux host, a kernel without AppArmor) and rootless, where nobody can
// load an AppArmor profile. safe-run-init applies the ruleset to itself
// right before it forks and executes the service, after every mount exists;
// safe-run sends it there over the control socket, beside the seccomp
// program (launcher/initlink_linux.go, Encode). With init = false the spec
// starts safe-run-init all the same, with --no-init: it applies the
// ruleset and execs the service in its own place, so no init process
// stays and the service is PID 1 (plan.NoInitFlag).
//
// # What the generated ruleset allows
//
// Landlock grants access by file hierarchy: a right given on a directory
// holds for everything beneath it, mounts included. So:
//
//   - "/" is readable (read file, read directory): the image and every
//     mount the container has. The mount namespace already decides what
//     can be read; Landlock decides what can be written and run. A path
//     that leads out of the container's tree is not read: Landlock
//     judges a file by its real ancestors, so a host directory's
//     descriptor passed in and opened through /proc/self/fd/N is
//     denied, and with pid = "host" so is a host process's /proc/PID/cwd
//     (Landlock's ptrace rule first: no /proc/PID link into a process
//     outside the domain). launcher's TestLandlockPathsOutside.
//   - Execute is granted on the image's own entries only: each top-level
//     entry of the image that is not a mount point and holds none, and,
//     beneath those that hold one (/var when /var/lib/app is a volume),
//     their entries, recursively. Symbolic links are skipped: what they
//     point to gets its own rule or none.
//   - Writable places (tmpfs mounts, /dev/shm, volumes and binds that are
//     not read-only) are read/write but never execute, unless a tmpfs says
//     exec. Rename and link (refer) are granted within each place; across
//     places the kernel refuses them anyway (EXDEV: each is its own mount).
//   - Read-only binds, read-only volumes, secrets, /proc and /sys: read
//     only (from "/"), never execute: a bind brings the host's data in,
//     not programs, and a program there runs only once copied into the
//     image (or onto a tmpfs that says exec). No manifest key loosens
//     this: a bind of a host directory that others can write would
//     otherwise run whatever they put there. safe-run-init's exit 126
//     says it was Landlock that denied execute, and this fix.
//   - The device nodes the container gets (/dev/null, zero, full, random,
//     urandom, tty, ptmx, /dev/pts and the spec's devices): read, write,
//     truncate; device ioctls (ABI 5) only on the terminal, when the
//     service has one.
//   - Network (ABI 4): TCP bind only to the container ports of [network]
//     ports and [security] landlock_bind. TCP connect where egress says
//     by port: with network mode none, only to the ports the service binds
//     itself (loopback reaches nothing else); in bridge mode with egress
//     "none" on a bridge of its own, port 53 only (DNS falls back to TCP);
//     with a list whose every entry names a port, those ports and 53.
//     Egress "all", an entry without a port, a named bridge (its peers'
//     ports are not known here) and host networking leave connect
//     unrestricted. DNS in bridge mode is UDP, which Landlock does not
//     restrict.
//   - Scoping (ABI 6): no connecting to abstract unix sockets created
//     outside the service, and no signals to processes outside it.
//   - ABI 7: denials of the service itself are audited
//     (LANDLOCK_RESTRICT_SELF_LOG_NEW_EXEC_ON: the domain is made before
//     the service's execve, after which the kernel stops logging unless
//     asked), but only where the kernel's audit is enabled (auditd, or
//     audit=1): unlike seccomp's, Landlock's records are not printed
//     otherwise (security/landlock/audit.c checks audit_enabled). Elsewhere,
//     and before ABI 7, a denial is an EACCES (EPERM for a mount) to the
//     service and nothing more. Where they are audited, safe-run, as
//     root, shows the service's as it shows seccomp's ("landlock denied
//     write-file /etc/app/x", profiles/landlockaudit.go). Everywhere,
//     `safe-run profile record` says what the ruleset would deny of what
//     the service did (Ruleset.Denies, fed by the launcher's accessWatch).
//
// With read_only_rootfs = false ([insecure] writable_rootfs), "/" is
// writable as well, and the image's entries stay executable: W^X holds
// only for the declared writable places then.
//
// Mount destinations are resolved through the image's symbolic links as
// runc resolves them, so that a tmpfs at /var/run/x, which lands on
// /run/x, keeps /run from being granted execute.
//
// With ABI 1 (no refer right) the kernel refuses every rename or link
// across directories; with ABI 2 and 3 a service can truncate only what
// it can write (truncate is handled from ABI 3).
//
// Generate is pure: the same manifest, mounts, image entries and ABI give
// the same ruleset, and golden tests pin it for ABI 1, 2, 4, 6 and 7.
package landlock
