//go:build linux

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/*
 * safe_run_rootless_join runs before the Go runtime starts, in every
 * safe-run: when the outer safe-run asks for it (the variable below names
 * two descriptors it passed), it joins the user's shared user namespace
 * and network namespace and makes a mount namespace of its own, as the
 * first thing it does. setns into a user namespace needs a process with
 * one thread, which a Go program never is once its runtime runs; runc's
 * nsexec joins namespaces from a constructor for the same reason. The
 * user owns that user namespace, so setns gives this process every
 * capability in it: it is root there, as the inner safe-run of a run of
 * its own is after its second exec.
 *
 * The Go side (FinishEntry) removes the variable from the environment
 * before anything is started, so that no child tries again.
 */
#define JOIN_ENV "_SAFE_RUN_ROOTLESS_JOIN"

static void join_fail(const char *what)
{
	fprintf(stderr, "safe-run: joining your shared network namespace: %s: %s\n", what, strerror(errno));
	_exit(125);
}

__attribute__((constructor)) static void safe_run_rootless_join(void)
{
	const char *v = getenv(JOIN_ENV);
	int userfd, netfd;
	char end;

	if (v == NULL)
		return;
	if (sscanf(v, "%d,%d%c", &userfd, &netfd, &end) != 2) {
		errno = EINVAL;
		join_fail(JOIN_ENV);
	}
	if (setns(userfd, CLONE_NEWUSER) < 0)
		join_fail("its user namespace");
	if (setns(netfd, CLONE_NEWNET) < 0)
		join_fail("its network namespace");
	if (unshare(CLONE_NEWNS) < 0)
		join_fail("a mount namespace of this run's");
	close(userfd);
	close(netfd);
}

/*
 * safe_run_netns_pause creates the process that holds the user's shared
 * namespaces: a child in a new user namespace and a new network namespace
 * that only waits to be killed, as the launcher's userns holder does
 * (same trade: CLONE_VM, raw system calls only, its own stack, every
 * signal blocked from birth). It dies with the calling thread
 * (PDEATHSIG), which the keeper keeps locked for its whole life.
 */
static char pause_stack[64 * 1024] __attribute__((aligned(16)));

static int pause_hold(void *arg)
{
	pid_t parent = (pid_t)(intptr_t)arg;

	syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
	if (syscall(SYS_getppid) != parent)
		syscall(SYS_exit, 0);
	for (;;)
		syscall(SYS_pause);
	return 0;
}

int safe_run_netns_pause(void)
{
	sigset_t all, old;
	int pid, err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pid = clone(pause_hold, pause_stack + sizeof pause_stack, CLONE_VM | CLONE_NEWUSER | CLONE_NEWNET | SIGCHLD,
		    (void *)(intptr_t)getpid());
	err = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = err;
	return pid;
}
