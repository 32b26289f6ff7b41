//go:build linux

#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "seccomp_linux.h"

/*
 * The answering side of compileSeccomp (seccomp_linux.go). The thread that
 * runs libcontainer's seccomp set-up has a filter that turns the call
 * loading the final program into a user notification; this thread takes
 * it, copies the program (the caller's memory is this process's), and
 * refuses the call, so nothing is loaded.
 *
 * It is a C thread, not a goroutine: the loading call is a raw system call
 * that keeps its Go scheduler slot while it waits, and with GOMAXPROCS=1 a
 * goroutine could never run to answer it.
 */
static void *answer(void *arg)
{
	struct safe_run_capture *c = arg;
	struct pollfd fds[2] = {{.fd = c->listener, .events = POLLIN}, {.fd = c->cancel, .events = POLLIN}};

	for (;;) {
		struct seccomp_notif req;
		struct seccomp_notif_resp resp;
		const struct sock_fprog *prog;

		if (poll(fds, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			c->err = errno;
			return NULL;
		}
		if (fds[1].revents) {
			/* The set-up ended without loading anything. */
			c->err = ECANCELED;
			return NULL;
		}
		memset(&req, 0, sizeof req);
		if (ioctl(c->listener, SECCOMP_IOCTL_NOTIF_RECV, &req) < 0) {
			if (errno == EINTR || errno == ENOENT)
				continue;
			c->err = errno;
			return NULL;
		}
		/* seccomp(SECCOMP_SET_MODE_FILTER, flags, prog) or
		 * prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, prog): the
		 * filter lets no other call through to here. */
		prog = (const struct sock_fprog *)(uintptr_t)req.data.args[2];
		c->flags = req.data.nr == SYS_seccomp ? (unsigned int)req.data.args[1] : 0;
		c->len = prog->len <= BPF_MAXINSNS ? prog->len : 0;
		memcpy(c->insns, prog->filter, c->len * sizeof *prog->filter);
		if (c->answer_delay_us)
			usleep(c->answer_delay_us);
		memset(&resp, 0, sizeof resp);
		resp.id = req.id;
		resp.error = -ECANCELED;
		if (ioctl(c->listener, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0) {
			c->err = c->len ? 0 : E2BIG;
			return NULL;
		}
		/* ENOENT: a signal interrupted the call, which is made again
		 * (compileSeccomp blocks them on that thread; kept in case). */
		if (errno != ENOENT) {
			c->err = errno;
			return NULL;
		}
	}
}

int safe_run_capture_start(struct safe_run_capture *c, pthread_t *t)
{
	return pthread_create(t, NULL, answer, c);
}

int safe_run_capture_wait(pthread_t t)
{
	return pthread_join(t, NULL);
}
