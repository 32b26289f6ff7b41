//go:build linux

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * The child makes raw system calls only and touches nothing but its own
 * stack. It is born with every signal blocked (the parent's thread blocks
 * them around the clone), so no handler of the parent's ever runs in it,
 * not even for an instant; SIGKILL, which ends it, cannot be blocked. It
 * dies with the thread that made it (PDEATHSIG), and exits at once should
 * that thread already be gone.
 */
static int hold(void *arg)
{
	pid_t parent = (pid_t)(intptr_t)arg;

	syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (syscall(SYS_getppid) != parent)
		syscall(SYS_exit, 0);
	for (;;)
		syscall(SYS_pause);
	return 0;
}

int safe_run_ns_holder(int flags, void *stack_top)
{
	sigset_t all, old;
	int pid, err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = clone(hold, stack_top, CLONE_VM | flags | SIGCHLD, (void *)(intptr_t)getpid());
	err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = err;
	return pid;
}
