package profiles

import "github.com/opencontainers/runtime-spec/specs-go"

// Constants from the Linux UAPI headers. They are the same on amd64 and
// arm64; TestUAPIConstants checks them against golang.org/x/sys/unix.
const (
	// cloneNamespaces are the CLONE_NEW* flags clone(2) accepts:
	// NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET. CLONE_NEWTIME
	// (0x80) overlaps CSIGNAL in clone(2) and only unshare(2) and clone3(2)
	// take it.
	cloneNamespaces = 0x7e020000

	afUnix    = 1
	afInet    = 2
	afInet6   = 10
	afNetlink = 16

	netlinkRoute = 0
)

// defaultProfile is equivalent to Docker's default seccomp profile
// (github.com/moby/profiles/seccomp v0.3.0, DefaultProfile) for amd64 and
// arm64: the same calls are allowed, with the same argument tests, under
// the same capabilities. TestDefaultMatchesDocker compares the two for
// every call and several capability sets; where they differ on purpose, the
// test's table says why.
//
// Denied calls return EPERM and never kill: a program that probes for a
// feature gets an error it can handle. Calls newer than the newest call
// the filter names get ENOSYS instead (runc's patchbpf stub), so libc
// falls back to an older call as it does on an older kernel.
//
// Docker's rules for other architectures (ppc64le, s390x, riscv64, ...) are
// left out: safe-run builds specs for amd64 and arm64 only.
func defaultProfile() builtin {
	return builtin{compat: true, rules: []rule{
		// Reading and writing open files.
		allow("read", "readv", "pread64", "preadv", "preadv2",
			"write", "writev", "pwrite64", "pwritev", "pwritev2",
			"lseek", "_llseek", "sendfile", "sendfile64", "copy_file_range",
			"splice", "tee", "vmsplice", "readahead", "fadvise64", "fadvise64_64",
			"fallocate", "ftruncate", "ftruncate64", "truncate", "truncate64",
			"fsync", "fdatasync", "sync", "syncfs", "sync_file_range", "flock",
			"cachestat"),

		// Opening, closing and duplicating file descriptors.
		// open_by_handle_at needs CAP_DAC_READ_SEARCH (below): with it, a
		// handle guessed by brute force opens files outside the container
		// ("shocker", 2014).
		allow("open", "openat", "openat2", "creat", "close", "close_range",
			"dup", "dup2", "dup3", "fcntl", "fcntl64", "name_to_handle_at"),

		// File metadata and extended attributes. The kernel still checks
		// ownership and capabilities (CAP_CHOWN, CAP_FOWNER, ...).
		allow("stat", "stat64", "lstat", "lstat64", "fstat", "fstat64",
			"fstatat64", "newfstatat", "statx", "statfs", "statfs64", "fstatfs",
			"fstatfs64", "access", "faccessat", "faccessat2", "readlink",
			"readlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2",
			"chown", "chown32", "fchown", "fchown32", "fchownat", "lchown",
			"lchown32", "utime", "utimes", "utimensat", "utimensat_time64",
			"futimesat", "umask",
			"getxattr", "lgetxattr", "fgetxattr", "getxattrat", "listxattr",
			"llistxattr", "flistxattr", "listxattrat", "setxattr", "lsetxattr",
			"fsetxattr", "setxattrat", "removexattr", "lremovexattr",
			"fremovexattr", "removexattrat"),

		// Directories and names. mknod of a device needs CAP_MKNOD and the
		// device cgroup's consent.
		allow("chdir", "fchdir", "getcwd", "getdents", "getdents64",
			"mkdir", "mkdirat", "rmdir", "rename", "renameat", "renameat2",
			"link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat",
			"mknod", "mknodat"),

		// Waiting for descriptors, events and notifications, and ioctl,
		// which Docker does not filter by request: requests mean something
		// different on each device, and the device cgroup limits which
		// devices there are. The strict profile does filter it.
		allow("poll", "ppoll", "ppoll_time64", "select", "_newselect",
			"pselect6", "pselect6_time64", "epoll_create", "epoll_create1",
			"epoll_ctl", "epoll_ctl_old", "epoll_wait", "epoll_wait_old",
			"epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "signalfd",
			"signalfd4", "timerfd_create", "timerfd_gettime",
			"timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
			"inotify_init", "inotify_init1", "inotify_add_watch",
			"inotify_rm_watch", "fanotify_mark", "ioctl", "pipe", "pipe2"),

		// Linux AIO. io_uring is not here: it runs work outside the
		// process's seccomp filter and has been a steady source of kernel
		// exploits, so Docker denies it too.
		allow("io_setup", "io_destroy", "io_submit", "io_cancel",
			"io_getevents", "io_pgetevents", "io_pgetevents_time64"),

		// Memory.
		allow("brk", "mmap", "mmap2", "munmap", "mremap", "mprotect",
			"madvise", "mincore", "mlock", "mlock2", "mlockall", "munlock",
			"munlockall", "msync", "remap_file_pages", "membarrier",
			"memfd_create", "memfd_secret", "pkey_alloc", "pkey_free",
			"pkey_mprotect", "map_shadow_stack", "mseal"),

		// Processes and threads: creating, running, waiting for and
		// signalling them, and reading their limits and usage. clone and
		// clone3 are below: creating namespaces needs CAP_SYS_ADMIN.
		allow("fork", "vfork", "execve", "execveat", "exit", "exit_group",
			"wait4", "waitid", "waitpid", "kill", "tkill", "tgkill",
			"pidfd_open", "pidfd_send_signal", "process_mrelease",
			"getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp",
			"getsid", "setsid", "set_tid_address", "set_robust_list",
			"get_robust_list", "rseq", "prctl", "get_thread_area",
			"set_thread_area", "uname", "sysinfo", "getrusage", "times",
			"getrlimit", "setrlimit", "ugetrlimit", "prlimit64", "getpriority",
			"setpriority", "ioprio_get", "ioprio_set", "getcpu",
			"restart_syscall", "uretprobe"),

		// Scheduling. Raising priority still needs CAP_SYS_NICE.
		allow("sched_yield", "sched_getaffinity", "sched_setaffinity",
			"sched_getattr", "sched_setattr", "sched_getparam",
			"sched_setparam", "sched_getscheduler", "sched_setscheduler",
			"sched_get_priority_max", "sched_get_priority_min",
			"sched_rr_get_interval", "sched_rr_get_interval_time64"),

		// User and group IDs and capabilities. Changing them still needs
		// CAP_SETUID, CAP_SETGID or CAP_SETPCAP.
		allow("getuid", "getuid32", "geteuid", "geteuid32", "getgid",
			"getgid32", "getegid", "getegid32", "getresuid", "getresuid32",
			"getresgid", "getresgid32", "getgroups", "getgroups32",
			"setuid", "setuid32", "setgid", "setgid32", "setreuid",
			"setreuid32", "setregid", "setregid32", "setresuid",
			"setresuid32", "setresgid", "setresgid32", "setgroups",
			"setgroups32", "setfsuid", "setfsuid32", "setfsgid", "setfsgid32",
			"capget", "capset"),

		// Signals.
		allow("rt_sigaction", "rt_sigpending", "rt_sigprocmask",
			"rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
			"rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
			"sigaltstack", "sigprocmask", "sigreturn", "pause", "alarm"),

		// Clocks and timers. adjtimex and clock_adjtime only read the
		// clock without CAP_SYS_TIME.
		allow("clock_gettime", "clock_gettime64", "clock_getres",
			"clock_getres_time64", "clock_nanosleep", "clock_nanosleep_time64",
			"nanosleep", "gettimeofday", "time", "adjtimex", "clock_adjtime",
			"clock_adjtime64", "getitimer", "setitimer", "timer_create",
			"timer_delete", "timer_getoverrun", "timer_gettime",
			"timer_gettime64", "timer_settime", "timer_settime64"),

		// Futexes, the base of every lock and condition variable.
		allow("futex", "futex_time64", "futex_waitv", "futex_wait",
			"futex_wake", "futex_requeue"),

		// Sockets, once created. socket itself is filtered by address
		// family below. socketcall (i386, arm) multiplexes all of them
		// behind a pointer that seccomp cannot read, so on those ABIs the
		// family filter does not apply.
		allow("accept", "accept4", "bind", "connect", "listen",
			"getpeername", "getsockname", "getsockopt", "setsockopt", "recv",
			"recvfrom", "recvmsg", "recvmmsg", "recvmmsg_time64", "send",
			"sendto", "sendmsg", "sendmmsg", "shutdown", "socketpair",
			"socketcall"),

		// System V IPC and POSIX message queues, private to the IPC
		// namespace.
		allow("ipc", "msgctl", "msgget", "msgrcv", "msgsnd", "semctl",
			"semget", "semop", "semtimedop", "semtimedop_time64", "shmat",
			"shmctl", "shmdt", "shmget", "mq_getsetattr", "mq_notify",
			"mq_open", "mq_timedreceive", "mq_timedreceive_time64",
			"mq_timedsend", "mq_timedsend_time64", "mq_unlink"),

		// A program may always confine itself further.
		allow("seccomp", "landlock_add_rule", "landlock_create_ruleset",
			"landlock_restrict_self"),

		// Reading the mount table, which the mount namespace limits.
		allow("listmount", "statmount"),

		allow("getrandom"),

		// Tracing processes the kernel lets us trace (same user, not more
		// privileged). Docker allows these from Linux 4.8 on: before it
		// (93e35efb8de4, "x86/ptrace: run seccomp after ptrace") a tracer
		// could change a call after seccomp had checked it. safe-run does
		// not support kernels that old (runc's cgroup v2 documentation
		// forbids anything before 4.15), so they are allowed outright.
		allow("ptrace", "process_vm_readv", "process_vm_writev"),

		// Address families for socket(2), as Docker allows them. Left out
		// are families the kernel no longer implements and two Docker
		// blocks on purpose: AF_ALG (kernel crypto API, a large attack
		// surface no container needs) and AF_VSOCK (before Linux 7.0 it
		// reaches any VM on the host by CID, across network namespaces).
		// AF_UNSPEC (0) slips into the first test, but socket(2) refuses
		// it anyway.
		{names: []string{"socket"}, args: []specs.LinuxSeccompArg{argLt(0, afInet+1)}}, // AF_UNIX, AF_INET
		socketFamily(7),         // AF_BRIDGE
		socketFamily(8),         // AF_ATMPVC
		socketFamily(9),         // AF_X25
		socketFamily(afInet6),   // AF_INET6
		socketFamily(13),        // AF_NETBEUI
		socketFamily(14),        // AF_SECURITY
		socketFamily(15),        // AF_KEY
		socketFamily(afNetlink), // AF_NETLINK
		socketFamily(17),        // AF_PACKET
		socketFamily(18),        // AF_ASH
		socketFamily(21),        // AF_RDS
		socketFamily(22),        // AF_SNA
		socketFamily(24),        // AF_PPPOX
		socketFamily(26),        // AF_LLC
		socketFamily(27),        // AF_IB
		socketFamily(28),        // AF_MPLS
		socketFamily(29),        // AF_CAN
		socketFamily(30),        // AF_TIPC
		socketFamily(31),        // AF_BLUETOOTH
		socketFamily(32),        // AF_IUCV
		socketFamily(33),        // AF_RXRPC
		socketFamily(35),        // AF_PHONET
		socketFamily(36),        // AF_IEEE802154
		socketFamily(39),        // AF_NFC
		socketFamily(41),        // AF_KCM
		socketFamily(42),        // AF_QIPCRTR
		socketFamily(43),        // AF_SMC
		socketFamily(44),        // AF_XDP
		socketFamily(45),        // AF_MCTP

		// personality(2) only for the harmless personas: PER_LINUX,
		// UNAME26, ADDR_NO_RANDOMIZE (what setarch -R and gdb use), both
		// together, and 0xffffffff, which only queries.
		{names: []string{"personality"}, args: []specs.LinuxSeccompArg{argEq(0, 0)}},
		{names: []string{"personality"}, args: []specs.LinuxSeccompArg{argEq(0, 0x0008)}},
		{names: []string{"personality"}, args: []specs.LinuxSeccompArg{argEq(0, 0x20000)}},
		{names: []string{"personality"}, args: []specs.LinuxSeccompArg{argEq(0, 0x20008)}},
		{names: []string{"personality"}, args: []specs.LinuxSeccompArg{argEq(0, 0xffffffff)}},

		// Architecture-specific calls: TLS and descriptor tables on x86,
		// the 32-bit ARM ABI's private calls on arm64.
		{names: []string{"arch_prctl"}, arches: []string{"amd64"}},
		{names: []string{"modify_ldt"}, arches: []string{"amd64"}},
		{names: []string{"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2",
			"breakpoint", "cacheflush", "set_tls"}, arches: []string{"arm64"}},

		// New processes and threads, but no new namespaces without
		// CAP_SYS_ADMIN: they would let the process rearrange its view of
		// the system. clone's flags are its first argument on amd64 and
		// arm64 (only s390 swaps them).
		{
			names:      []string{"clone"},
			args:       []specs.LinuxSeccompArg{argMasked(0, cloneNamespaces, 0)},
			unlessCaps: []string{"CAP_SYS_ADMIN"},
		},
		// clone3 passes its flags in memory, where seccomp cannot look.
		// ENOSYS makes glibc fall back to clone, which the rule above
		// checks.
		{
			names:      []string{"clone3"},
			action:     specs.ActErrno,
			errno:      errnoENOSYS,
			unlessCaps: []string{"CAP_SYS_ADMIN"},
		},

		// What each capability is for, when the process holds it.
		{
			names: []string{"bpf", "clone", "clone3", "fanotify_init", "fsconfig",
				"fsmount", "fsopen", "fspick", "lookup_dcookie",
				"lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr",
				"mount", "mount_setattr", "move_mount", "open_tree",
				"perf_event_open", "quotactl", "quotactl_fd", "setdomainname",
				"sethostname", "setns", "syslog", "umount", "umount2", "unshare"},
			ifCaps: []string{"CAP_SYS_ADMIN"},
		},
		{names: []string{"open_by_handle_at"}, ifCaps: []string{"CAP_DAC_READ_SEARCH"}},
		{names: []string{"reboot"}, ifCaps: []string{"CAP_SYS_BOOT"}},
		{names: []string{"chroot"}, ifCaps: []string{"CAP_SYS_CHROOT"}},
		{names: []string{"delete_module", "init_module", "finit_module"}, ifCaps: []string{"CAP_SYS_MODULE"}},
		{names: []string{"acct"}, ifCaps: []string{"CAP_SYS_PACCT"}},
		{names: []string{"kcmp", "pidfd_getfd", "process_madvise"}, ifCaps: []string{"CAP_SYS_PTRACE"}},
		{names: []string{"iopl", "ioperm"}, ifCaps: []string{"CAP_SYS_RAWIO"}},
		{names: []string{"settimeofday", "stime", "clock_settime", "clock_settime64"}, ifCaps: []string{"CAP_SYS_TIME"}},
		{names: []string{"vhangup"}, ifCaps: []string{"CAP_SYS_TTY_CONFIG"}},
		{names: []string{"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}, ifCaps: []string{"CAP_SYS_NICE"}},
		{names: []string{"syslog"}, ifCaps: []string{"CAP_SYSLOG"}},
		{names: []string{"bpf"}, ifCaps: []string{"CAP_BPF"}},
		{names: []string{"perf_event_open"}, ifCaps: []string{"CAP_PERFMON"}},
	}}
}

// socketFamily allows socket(2) for one address family.
func socketFamily(family uint64) rule {
	return rule{names: []string{"socket"}, args: []specs.LinuxSeccompArg{argEq(0, family)}}
}
