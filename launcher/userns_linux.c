//go:build linux

#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * safe_run_userns_holder creates a child in a new user namespace that only
 * waits to be killed: the parent writes its id maps and opens its
 * /proc/PID/ns/user. Go can only get there through fork and exec of a whole
 * program; a raw clone without exec costs a fraction of that.
 *
 * The child is a copy of a multithreaded Go process: it makes raw system
 * calls only, never returns into Go, and runs no signal handler (every
 * signal is blocked; SIGKILL, which ends it, cannot be).
 */
int safe_run_userns_holder(void)
{
	pid_t parent = getpid();
	long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
	if (pid != 0)
		return (int)pid; /* the parent: the child's pid, or -1 */

	sigset_t all;
	sigfillset(&all);
	syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, _NSIG / 8);
	syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (syscall(SYS_getppid) != parent)
		syscall(SYS_exit_group, 0);
	for (;;)
		syscall(SYS_pause);
}
