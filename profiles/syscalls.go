package profiles

import (
	"strings"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// System call names per seccomp architecture. They come from
// golang.org/x/sys/unix v0.49.0 (zsysnum_linux_*.go, generated from the
// kernel's syscall tables, less markers such as arch_specific_syscall), plus
// the ARM private calls (__ARM_NR_breakpoint, ...) that libseccomp names and
// x/sys does not. TestSyscallTables checks them against the host's
// libseccomp. A call newer than both is added here by hand.

// syscallSet returns the names of the system calls of arches.
func syscallSet(arches ...specs.Arch) map[string]bool {
	set := map[string]bool{}
	for _, a := range arches {
		for _, n := range strings.Fields(syscallNames(a)) {
			set[n] = true
		}
	}
	return set
}

// isSyscall reports whether name is a system call on any architecture,
// which is how a custom profile's names are checked: Docker's own profile
// names calls of every architecture in one list.
func isSyscall(name string) bool {
	for _, list := range []string{syscallsX86_64, syscallsX86, syscallsAArch64, syscallsARM, syscallsOther} {
		if containsField(list, name) {
			return true
		}
	}
	return false
}

func containsField(list, name string) bool {
	for f := range strings.FieldsSeq(list) {
		if f == name {
			return true
		}
	}
	return false
}

func syscallNames(a specs.Arch) string {
	switch a {
	case specs.ArchX86_64, specs.ArchX32:
		return syscallsX86_64
	case specs.ArchX86:
		return syscallsX86
	case specs.ArchAARCH64:
		return syscallsAArch64
	case specs.ArchARM:
		return syscallsARM
	}
	return ""
}

// syscallsX86_64 are the system calls of SCMP_ARCH_X86_64. SCMP_ARCH_X32 has
// no names of its own: it numbers a subset of these differently.
const syscallsX86_64 = `
_sysctl accept accept4 access acct add_key adjtimex afs_syscall alarm
arch_prctl bind bpf brk cachestat capget capset chdir chmod chown chroot
clock_adjtime clock_getres clock_gettime clock_nanosleep clock_settime clone
clone3 close close_range connect copy_file_range creat create_module
delete_module dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve
execveat exit exit_group faccessat faccessat2 fadvise64 fallocate
fanotify_init fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchownat
fcntl fdatasync fgetxattr file_getattr file_setattr finit_module flistxattr
flock fork fremovexattr fsconfig fsetxattr fsmount fsopen fspick fstat fstatfs
fsync ftruncate futex futex_requeue futex_wait futex_waitv futex_wake
futimesat get_kernel_syms get_mempolicy get_robust_list get_thread_area getcpu
getcwd getdents getdents64 getegid geteuid getgid getgroups getitimer
getpeername getpgid getpgrp getpid getpmsg getppid getpriority getrandom
getresgid getresuid getrlimit getrusage getsid getsockname getsockopt gettid
gettimeofday getuid getxattr getxattrat init_module inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel io_destroy io_getevents
io_pgetevents io_setup io_submit io_uring_enter io_uring_register
io_uring_setup ioctl ioperm iopl ioprio_get ioprio_set kcmp kexec_file_load
kexec_load keyctl kill landlock_add_rule landlock_create_ruleset
landlock_restrict_self lchown lgetxattr link linkat listen listmount listns
listxattr listxattrat llistxattr lookup_dcookie lremovexattr lseek lsetxattr
lsm_get_self_attr lsm_list_modules lsm_set_self_attr lstat madvise
map_shadow_stack mbind membarrier memfd_create memfd_secret migrate_pages
mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap modify_ldt
mount mount_setattr move_mount move_pages mprotect mq_getsetattr mq_notify
mq_open mq_timedreceive mq_timedsend mq_unlink mremap mseal msgctl msgget
msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep
newfstatat nfsservctl open open_by_handle_at open_tree open_tree_attr openat
openat2 pause perf_event_open personality pidfd_getfd pidfd_open
pidfd_send_signal pipe pipe2 pivot_root pkey_alloc pkey_free pkey_mprotect
poll ppoll prctl pread64 preadv preadv2 prlimit64 process_madvise
process_mrelease process_vm_readv process_vm_writev pselect6 ptrace putpmsg
pwrite64 pwritev pwritev2 query_module quotactl quotactl_fd read readahead
readlink readlinkat readv reboot recvfrom recvmmsg recvmsg remap_file_pages
removexattr removexattrat rename renameat renameat2 request_key
restart_syscall rmdir rseq rseq_slice_yield rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_tgsigqueueinfo sched_get_priority_max sched_get_priority_min
sched_getaffinity sched_getattr sched_getparam sched_getscheduler
sched_rr_get_interval sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp security select semctl semget semop
semtimedop sendfile sendmmsg sendmsg sendto set_mempolicy
set_mempolicy_home_node set_robust_list set_thread_area set_tid_address
setdomainname setfsgid setfsuid setgid setgroups sethostname setitimer setns
setpgid setpriority setregid setresgid setresuid setreuid setrlimit setsid
setsockopt settimeofday setuid setxattr setxattrat shmat shmctl shmdt shmget
shutdown sigaltstack signalfd signalfd4 socket socketpair splice stat statfs
statmount statx swapoff swapon symlink symlinkat sync sync_file_range syncfs
sysfs sysinfo syslog tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_settime timerfd_create timerfd_gettime
timerfd_settime times tkill truncate tuxcall umask umount2 uname unlink
unlinkat unshare uprobe uretprobe uselib userfaultfd ustat utime utimensat
utimes vfork vhangup vmsplice vserver wait4 waitid write writev
`

// syscallsX86 are the system calls of SCMP_ARCH_X86 (i386).
const syscallsX86 = `
_llseek _newselect _sysctl accept4 access acct add_key adjtimex afs_syscall
alarm arch_prctl bdflush bind bpf break brk cachestat capget capset chdir
chmod chown chown32 chroot clock_adjtime clock_adjtime64 clock_getres
clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
clock_nanosleep_time64 clock_settime clock_settime64 clone clone3 close
close_range connect copy_file_range creat create_module delete_module dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_pwait epoll_pwait2 epoll_wait
eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2
fadvise64 fadvise64_64 fallocate fanotify_init fanotify_mark fchdir fchmod
fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
file_getattr file_setattr finit_module flistxattr flock fork fremovexattr
fsconfig fsetxattr fsmount fsopen fspick fstat fstat64 fstatat64 fstatfs
fstatfs64 fsync ftime ftruncate ftruncate64 futex futex_requeue futex_time64
futex_wait futex_waitv futex_wake futimesat get_kernel_syms get_mempolicy
get_robust_list get_thread_area getcpu getcwd getdents getdents64 getegid
getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer
getpeername getpgid getpgrp getpid getpmsg getppid getpriority getrandom
getresgid getresgid32 getresuid getresuid32 getrlimit getrusage getsid
getsockname getsockopt gettid gettimeofday getuid getuid32 getxattr getxattrat
gtty idle init_module inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel io_destroy io_getevents io_pgetevents
io_pgetevents_time64 io_setup io_submit io_uring_enter io_uring_register
io_uring_setup ioctl ioperm iopl ioprio_get ioprio_set ipc kcmp kexec_load
keyctl kill landlock_add_rule landlock_create_ruleset landlock_restrict_self
lchown lchown32 lgetxattr link linkat listen listmount listns listxattr
listxattrat llistxattr lock lookup_dcookie lremovexattr lseek lsetxattr
lsm_get_self_attr lsm_list_modules lsm_set_self_attr lstat lstat64 madvise
map_shadow_stack mbind membarrier memfd_create memfd_secret migrate_pages
mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2
modify_ldt mount mount_setattr move_mount move_pages mprotect mpx
mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv
msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep nfsservctl
nice oldfstat oldlstat oldolduname oldstat olduname open open_by_handle_at
open_tree open_tree_attr openat openat2 pause perf_event_open personality
pidfd_getfd pidfd_open pidfd_send_signal pipe pipe2 pivot_root pkey_alloc
pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_madvise process_mrelease process_vm_readv process_vm_writev
prof profil pselect6 pselect6_time64 ptrace putpmsg pwrite64 pwritev pwritev2
query_module quotactl quotactl_fd read readahead readdir readlink readlinkat
readv reboot recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages
removexattr removexattrat rename renameat renameat2 request_key
restart_syscall rmdir rseq rseq_slice_yield rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_get_priority_max
sched_get_priority_min sched_getaffinity sched_getattr sched_getparam
sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64
sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield
seccomp select semctl semget semtimedop_time64 sendfile sendfile64 sendmmsg
sendmsg sendto set_mempolicy set_mempolicy_home_node set_robust_list
set_thread_area set_tid_address setdomainname setfsgid setfsgid32 setfsuid
setfsuid32 setgid setgid32 setgroups setgroups32 sethostname setitimer setns
setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
setresuid32 setreuid setreuid32 setrlimit setsid setsockopt settimeofday
setuid setuid32 setxattr setxattrat sgetmask shmat shmctl shmdt shmget
shutdown sigaction sigaltstack signal signalfd signalfd4 sigpending
sigprocmask sigreturn sigsuspend socket socketcall socketpair splice ssetmask
stat stat64 statfs statfs64 statmount statx stime stty swapoff swapon symlink
symlinkat sync sync_file_range syncfs sysfs sysinfo syslog tee tgkill time
timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64
timer_settime timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64
timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit
ulimit umask umount umount2 uname unlink unlinkat unshare uselib userfaultfd
ustat utime utimensat utimensat_time64 utimes vfork vhangup vm86 vm86old
vmsplice vserver wait4 waitid waitpid write writev
`

// syscallsAArch64 are the system calls of SCMP_ARCH_AARCH64.
const syscallsAArch64 = `
accept accept4 acct add_key adjtimex bind bpf brk
cachestat capget capset chdir chroot clock_adjtime clock_getres clock_gettime
clock_nanosleep clock_settime clone clone3 close close_range connect
copy_file_range delete_module dup dup3 epoll_create1 epoll_ctl epoll_pwait
epoll_pwait2 eventfd2 execve execveat exit exit_group faccessat faccessat2
fadvise64 fallocate fanotify_init fanotify_mark fchdir fchmod fchmodat
fchmodat2 fchown fchownat fcntl fdatasync fgetxattr file_getattr file_setattr
finit_module flistxattr flock fremovexattr fsconfig fsetxattr fsmount fsopen
fspick fstat fstatfs fsync ftruncate futex futex_requeue futex_wait
futex_waitv futex_wake get_mempolicy get_robust_list getcpu getcwd getdents64
getegid geteuid getgid getgroups getitimer getpeername getpgid getpid getppid
getpriority getrandom getresgid getresuid getrlimit getrusage getsid
getsockname getsockopt gettid gettimeofday getuid getxattr getxattrat
init_module inotify_add_watch inotify_init1 inotify_rm_watch io_cancel
io_destroy io_getevents io_pgetevents io_setup io_submit io_uring_enter
io_uring_register io_uring_setup ioctl ioprio_get ioprio_set kcmp
kexec_file_load kexec_load keyctl kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lgetxattr linkat listen
listmount listns listxattr listxattrat llistxattr lookup_dcookie lremovexattr
lseek lsetxattr lsm_get_self_attr lsm_list_modules lsm_set_self_attr madvise
map_shadow_stack mbind membarrier memfd_create memfd_secret migrate_pages
mincore mkdirat mknodat mlock mlock2 mlockall mmap mount mount_setattr
move_mount move_pages mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedsend mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock
munlockall munmap name_to_handle_at nanosleep newfstatat nfsservctl
open_by_handle_at open_tree open_tree_attr openat openat2 perf_event_open
personality pidfd_getfd pidfd_open pidfd_send_signal pipe2 pivot_root
pkey_alloc pkey_free pkey_mprotect ppoll prctl pread64 preadv preadv2
prlimit64 process_madvise process_mrelease process_vm_readv process_vm_writev
pselect6 ptrace pwrite64 pwritev pwritev2 quotactl quotactl_fd read readahead
readlinkat readv reboot recvfrom recvmmsg recvmsg remap_file_pages removexattr
removexattrat renameat renameat2 request_key restart_syscall rseq
rseq_slice_yield rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_tgsigqueueinfo
sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr
sched_getparam sched_getscheduler sched_rr_get_interval sched_setaffinity
sched_setattr sched_setparam sched_setscheduler sched_yield seccomp semctl
semget semop semtimedop sendfile sendmmsg sendmsg sendto set_mempolicy
set_mempolicy_home_node set_robust_list set_tid_address setdomainname setfsgid
setfsuid setgid setgroups sethostname setitimer setns setpgid setpriority
setregid setresgid setresuid setreuid setrlimit setsid setsockopt settimeofday
setuid setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack
signalfd4 socket socketpair splice statfs statmount statx swapoff swapon
symlinkat sync sync_file_range syncfs sysinfo syslog tee tgkill timer_create
timer_delete timer_getoverrun timer_gettime timer_settime timerfd_create
timerfd_gettime timerfd_settime times tkill truncate umask umount2 uname
unlinkat unshare userfaultfd utimensat vhangup vmsplice wait4 waitid write
writev
`

// syscallsARM are the system calls of SCMP_ARCH_ARM, including the ARM private
// calls (__ARM_NR_breakpoint, ...) that libseccomp names.
const syscallsARM = `
_llseek _newselect _sysctl accept accept4 access acct add_key adjtimex
arm_fadvise64_64 arm_sync_file_range bdflush bind bpf breakpoint brk
cacheflush cachestat capget capset chdir chmod chown chown32 chroot
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 clock_settime
clock_settime64 clone clone3 close close_range connect copy_file_range creat
delete_module dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_pwait
epoll_pwait2 epoll_wait eventfd eventfd2 execve execveat exit exit_group
faccessat faccessat2 fallocate fanotify_init fanotify_mark fchdir fchmod
fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
file_getattr file_setattr finit_module flistxattr flock fork fremovexattr
fsconfig fsetxattr fsmount fsopen fspick fstat fstat64 fstatat64 fstatfs
fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64
futex_wait futex_waitv futex_wake futimesat get_mempolicy get_robust_list
get_tls getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32
getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid
getresuid32 getrusage getsid getsockname getsockopt gettid gettimeofday getuid
getuid32 getxattr getxattrat init_module inotify_add_watch inotify_init
inotify_init1 inotify_rm_watch io_cancel io_destroy io_getevents io_pgetevents
io_pgetevents_time64 io_setup io_submit io_uring_enter io_uring_register
io_uring_setup ioctl ioprio_get ioprio_set kcmp kexec_file_load kexec_load
keyctl kill landlock_add_rule landlock_create_ruleset landlock_restrict_self
lchown lchown32 lgetxattr link linkat listen listmount listns listxattr
listxattrat llistxattr lookup_dcookie lremovexattr lseek lsetxattr
lsm_get_self_attr lsm_list_modules lsm_set_self_attr lstat lstat64 madvise
map_shadow_stack mbind membarrier memfd_create migrate_pages mincore mkdir
mkdirat mknod mknodat mlock mlock2 mlockall mmap2 mount mount_setattr
move_mount move_pages mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal
msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at
nanosleep nfsservctl nice open open_by_handle_at open_tree open_tree_attr
openat openat2 pause pciconfig_iobase pciconfig_read pciconfig_write
perf_event_open personality pidfd_getfd pidfd_open pidfd_send_signal pipe
pipe2 pivot_root pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64
prctl pread64 preadv preadv2 prlimit64 process_madvise process_mrelease
process_vm_readv process_vm_writev pselect6 pselect6_time64 ptrace pwrite64
pwritev pwritev2 quotactl quotactl_fd read readahead readlink readlinkat readv
reboot recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages
removexattr removexattrat rename renameat renameat2 request_key
restart_syscall rmdir rseq rseq_slice_yield rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_get_priority_max
sched_get_priority_min sched_getaffinity sched_getattr sched_getparam
sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64
sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield
seccomp semctl semget semop semtimedop semtimedop_time64 send sendfile
sendfile64 sendmmsg sendmsg sendto set_mempolicy set_mempolicy_home_node
set_robust_list set_tid_address set_tls setdomainname setfsgid setfsgid32
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 sethostname
setitimer setns setpgid setpriority setregid setregid32 setresgid setresgid32
setresuid setresuid32 setreuid setreuid32 setrlimit setsid setsockopt
settimeofday setuid setuid32 setxattr setxattrat shmat shmctl shmdt shmget
shutdown sigaction sigaltstack signalfd signalfd4 sigpending sigprocmask
sigreturn sigsuspend socket socketpair splice stat stat64 statfs statfs64
statmount statx swapoff swapon symlink symlinkat sync syncfs sysfs sysinfo
syslog tee tgkill timer_create timer_delete timer_getoverrun timer_gettime
timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate
truncate64 ugetrlimit umask umount2 uname unlink unlinkat unshare uselib
userfaultfd usr26 usr32 ustat utimensat utimensat_time64 utimes vfork vhangup
vmsplice vserver wait4 waitid write writev
`

// syscallsOther are the system calls that only other architectures have
// (MIPS, PowerPC, s390, RISC-V, LoongArch, SPARC). A custom profile may name
// them, as Docker's own does; they match nothing on amd64 or arm64.
const syscallsOther = `
cachectl execv getdomainname getpagesize kern_features memory_ordering
multiplexer perfctr reserved177 reserved193 reserved221 reserved82
riscv_flush_icache riscv_hwprobe rtas s390_guarded_storage s390_pci_mmio_read
s390_pci_mmio_write s390_runtime_instr s390_sthyi sched_get_affinity
sched_set_affinity spu_create spu_run subpage_prot swapcontext switch_endian
sync_file_range2 sys_debug_setcontext syscall sysmips timerfd unused109
unused150 unused18 unused28 unused59 unused84 utrap_install
`
