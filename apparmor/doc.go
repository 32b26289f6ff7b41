// Package apparmor is the stage of safe-run between the seccomp profiles and
// the launcher: it writes an AppArmor profile for each service from its
// validated manifest, and loads it into the kernel before the service starts.
//
// # Generation
//
// Generate is pure: the profile follows from the manifest alone, so the same
// manifest gives the same text on every host, and golden tests pin it. Where
// docker-default (moby/profiles) grants every file, capability and socket and
// then denies a list of dangerous paths, the generated profile grants only
// what this service declares:
//
//   - reading, mapping and running what the image holds, in the same profile;
//   - writing only to the declared writable mounts (tmpfs, volumes,
//     read_only = false binds), to /dev/shm and to the few devices every
//     program uses, and never running what was written there (W^X);
//   - exactly the declared capabilities; raw and packet sockets only with
//     NET_RAW;
//   - signals and ptrace only within the service, and signals from the
//     supervisor;
//   - deny rules for what container escapes are made of: mount, umount,
//     pivot_root, /proc/sys, /proc/sysrq-trigger, /proc/kcore, /sys, and
//     the mem and attr files of processes. They are audited in enforce
//     mode; in complain mode they are quiet, because the kernel holds
//     only quiet denials there, and so they hold while a service is staged.
//
// Every profile pins the policy ABI (abi <abi/3.0>) and includes nothing
// from /etc/apparmor.d, so what compiles on one host with apparmor_parser
// means the same on every kernel that loads it.
//
// The profile applies from the first program the container executes:
// libcontainer's "runc init" (safe-run itself, re-executed) asks for it with
// change_onexec, so "runc init" stays unconfined and the profile begins with
// /dev/init (safe-run-init) or, without init, with the service's command.
//
// # Host facts and loading
//
// ForService decides which profile applies on a host described by Host,
// which package host probes (host.Probe) and plan passes in; generation never looks at
// the host. Load, called by launcher.Run as root, compiles the profile with
// apparmor_parser once per content and loads the compiled policy through
// securityfs; an unchanged profile is not compiled again. Install puts the
// profile in /etc/apparmor.d for rootless users, who cannot load policy.
package apparmor
