package profiles

import "github.com/opencontainers/runtime-spec/specs-go"

// ioctl requests the strict profile allows: terminal attributes, window
// size, foreground process group, and per-descriptor flags. The values are
// from <asm-generic/ioctls.h>, which amd64 and arm64 share.
const (
	ioctlTCGETS     = 0x5401
	ioctlTCSETS     = 0x5402
	ioctlTCSETSW    = 0x5403
	ioctlTCSETSF    = 0x5404
	ioctlTCFLSH     = 0x540b
	ioctlTIOCGPGRP  = 0x540f
	ioctlTIOCSPGRP  = 0x5410
	ioctlTIOCGWINSZ = 0x5413
	ioctlTIOCSWINSZ = 0x5414
	ioctlFIONREAD   = 0x541b
	ioctlFIONBIO    = 0x5421
	ioctlFIONCLEX   = 0x5450
	ioctlFIOCLEX    = 0x5451
	// The termios2 requests: glibc 2.42 and later use them for
	// tcgetattr and tcsetattr.
	ioctlTCGETS2  = 0x802c542a
	ioctlTCSETS2  = 0x402c542b
	ioctlTCSETSW2 = 0x402c542c
	ioctlTCSETSF2 = 0x402c542d
)

// strictProfile is for services that need little from the kernel: a
// static Go server, a C or Rust daemon, a busybox shell script. It allows
// files, memory, threads and child processes, signals, clocks, and TCP,
// UDP and Unix sockets, and nothing that changes the system around the
// process. It covers what runc init itself calls after loading the filter
// (libcontainer/standard_init_linux.go in runc v1.5.2): closing its pipes,
// reopening the exec fifo through a checked /proc handle (openat2 or
// openat, fstatfs, fstat), writing to it, listing /proc/thread-self/fd
// (getdents64) to close descriptors, and execve; and without
// no_new_privileges, when runc loads the filter before it changes user,
// also close_range, prctl, capget, capset, setgroups, setgid, setuid,
// chdir and getcwd. TestStrictProfileRuns runs that sequence under it.
//
// Left out on purpose, beyond what the default profile denies:
//   - the 32-bit ABIs (i386 on amd64, arm on arm64): the filter
//     covers the native ABI only, and libseccomp kills a thread that makes
//     a 32-bit call;
//   - namespaces in any form (unshare, setns, clone with CLONE_NEW*, and
//     clone3, which returns ENOSYS so glibc falls back to clone), mount,
//     chroot, and the new mount API, whatever the capabilities;
//   - ptrace, process_vm_*, kcmp, bpf, perf_event_open, userfaultfd,
//     keyrings, module loading, and everything else the default profile
//     grants only with a capability;
//   - ioctl beyond terminal and descriptor-flag requests; socket beyond
//     AF_UNIX, AF_INET, AF_INET6 and NETLINK_ROUTE (which glibc's
//     getaddrinfo and Go's net.Interfaces use);
//   - System V IPC, POSIX message queues, Linux AIO, fanotify, xattr
//     writes, mknod, personality, sched_set*, setpriority, ioprio_set,
//     mlock, memfd_create, pkey_*, adjtimex and other clock adjustment,
//     sync and syncfs, name_to_handle_at.
//
// A service that needs more should use the default profile, or a custom
// profile recorded from a run under it.
func strictProfile() builtin {
	return builtin{compat: false, rules: []rule{
		// Running programs, and processes and threads without namespaces.
		allow("execve", "execveat", "exit", "exit_group", "fork", "vfork",
			"wait4", "waitid", "kill", "tkill", "tgkill", "pidfd_open",
			"pidfd_send_signal", "getpid", "getppid", "gettid", "getpgid",
			"setpgid", "getpgrp", "getsid", "setsid", "set_tid_address",
			"set_robust_list", "rseq", "prctl", "arch_prctl", "uname",
			"sysinfo", "getrusage", "times", "getrlimit", "setrlimit",
			"prlimit64", "getpriority", "sched_yield", "sched_getaffinity",
			"getcpu", "restart_syscall"),
		{names: []string{"clone"}, args: []specs.LinuxSeccompArg{argMasked(0, cloneNamespaces, 0)}},
		{names: []string{"clone3"}, action: specs.ActErrno, errno: errnoENOSYS},

		// User and group IDs and capabilities: runc changes them after
		// loading the filter when no_new_privileges is off, and a server
		// may drop privileges itself. Raising them needs capabilities.
		allow("getuid", "geteuid", "getgid", "getegid", "getresuid",
			"getresgid", "getgroups", "setuid", "setgid", "setreuid",
			"setregid", "setresuid", "setresgid", "setgroups", "capget",
			"capset"),

		// Memory, including what the dynamic loader and JITs need.
		allow("brk", "mmap", "munmap", "mremap", "mprotect", "madvise",
			"msync"),

		// Futexes and signals.
		allow("futex", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
			"rt_sigsuspend", "rt_sigtimedwait", "rt_sigpending", "sigaltstack",
			"pause", "alarm"),

		// Clocks and timers, read-only for the clocks.
		allow("clock_gettime", "clock_getres", "clock_nanosleep",
			"nanosleep", "gettimeofday", "time", "getitimer", "setitimer",
			"timer_create", "timer_settime", "timer_gettime",
			"timer_getoverrun", "timer_delete", "timerfd_create",
			"timerfd_settime", "timerfd_gettime"),

		// Files: opening, reading, writing, metadata, directories.
		allow("open", "openat", "openat2", "close", "close_range", "read",
			"readv", "pread64", "preadv", "write", "writev", "pwrite64",
			"pwritev", "lseek", "sendfile", "splice", "copy_file_range",
			"fadvise64", "fallocate", "ftruncate", "truncate", "fsync",
			"fdatasync", "flock", "fcntl", "dup", "dup2", "dup3",
			"stat", "lstat", "fstat", "newfstatat", "statx", "statfs",
			"fstatfs", "access", "faccessat", "faccessat2", "readlink",
			"readlinkat", "getxattr", "lgetxattr", "fgetxattr", "listxattr",
			"llistxattr", "flistxattr", "chmod", "fchmod", "fchmodat",
			"fchmodat2", "chown", "fchown", "fchownat", "lchown", "utimes",
			"utimensat", "umask", "chdir", "fchdir", "getcwd", "getdents",
			"getdents64", "mkdir", "mkdirat", "rmdir", "rename", "renameat",
			"renameat2", "link", "linkat", "symlink", "symlinkat", "unlink",
			"unlinkat"),

		// Waiting for descriptors and events.
		allow("pipe", "pipe2", "poll", "ppoll", "select", "pselect6",
			"epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
			"epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd",
			"signalfd4", "inotify_init1", "inotify_add_watch",
			"inotify_rm_watch"),

		// ioctl for terminals and descriptor flags only. The request is
		// an unsigned int but reaches seccomp as a 64-bit register, and
		// musl sign-extends it: compare the low 32 bits.
		ioctl(ioctlTCGETS), ioctl(ioctlTCSETS), ioctl(ioctlTCSETSW),
		ioctl(ioctlTCSETSF), ioctl(ioctlTCFLSH), ioctl(ioctlTIOCGPGRP),
		ioctl(ioctlTIOCSPGRP), ioctl(ioctlTIOCGWINSZ), ioctl(ioctlTIOCSWINSZ),
		ioctl(ioctlFIONREAD), ioctl(ioctlFIONBIO), ioctl(ioctlFIONCLEX),
		ioctl(ioctlFIOCLEX), ioctl(ioctlTCGETS2), ioctl(ioctlTCSETS2),
		ioctl(ioctlTCSETSW2), ioctl(ioctlTCSETSF2),

		// Sockets: Unix, IPv4 and IPv6, and route netlink to list
		// interfaces and addresses.
		allow("socketpair", "bind", "listen", "accept", "accept4",
			"connect", "getsockname", "getpeername", "getsockopt",
			"setsockopt", "sendto", "recvfrom", "sendmsg", "recvmsg",
			"sendmmsg", "recvmmsg", "shutdown"),
		socketFamily(afUnix),
		socketFamily(afInet),
		socketFamily(afInet6),
		{names: []string{"socket"}, args: []specs.LinuxSeccompArg{argEq(0, afNetlink), argEq(2, netlinkRoute)}},

		// Confining oneself further, and randomness.
		allow("seccomp", "landlock_add_rule", "landlock_create_ruleset",
			"landlock_restrict_self", "getrandom"),
	}}
}

// ioctl allows ioctl(2) with one request.
func ioctl(request uint64) rule {
	return rule{names: []string{"ioctl"}, args: []specs.LinuxSeccompArg{argMasked(1, 0xffffffff, request)}}
}
