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

