// Package host owns what safe-run knows about the machine it runs on: the
// cgroup mode, controllers and delegation, the LSMs and Landlock ABI, user
// namespaces and subordinate ids, CAP_SYS_RESOURCE and safe-run's own
// rlimits, seccomp's return actions, the kernel.
//
// Probe reads them once per process; doctor, check --host, plan and the
// launcher all read that one Facts value, so that no two of them can see a
// different host. Read reads the file part of them below a root directory,
// so that tests can stage a host (cgroup v1, v2 delegated or not, no
// AppArmor, securityfs unmounted) and check that the commands agree on it.
//
// Facts describe; they decide nothing. What a service needs of them is
// plan's to judge, and what the host really offers at the moment of a start
// is the launcher's to re-check.
package host
