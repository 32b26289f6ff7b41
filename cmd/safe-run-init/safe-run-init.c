/*
 * safe-run-init is the minimal init that safe-run runs as PID 1 of a
 * container when the manifest says init = true (the default).
 *
 * A service started as PID 1 gets no default signal handling from the
 * kernel: a shell script ignores SIGTERM and is only ever stopped by
 * SIGKILL, and nobody reaps the zombies of its orphaned children. This init
 * starts the service as its only child, forwards every signal it receives
 * to it, reaps every zombie, and exits with the service's status (128+N
 * when the service was killed by signal N). A service that asks its parent
 * to trace it (PTRACE_TRACEME) is let go on untraced. Exit 127: the command does not
 * exist; 126: it cannot be executed (docker run's codes).
 *
 * It is C, built static against musl, because it starts before every
 * service: a Go init costs about 4 ms more per start (runtime start-up, and
 * subscribing to each signal through the runtime), glibc's static start-up
 * about 1 ms more than musl's. It is mounted read-only into the
 * container (never the safe-run binary itself) and makes itself
 * non-dumpable, so the service can neither read its memory nor ptrace it.
 *
 * Usage: safe-run-init -- COMMAND [ARG...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int first = 1;
	sigset_t all, old;
	pid_t child;

	if (argc > 1 && strcmp(argv[1], "--") == 0)
		first = 2;
	if (first >= argc) {
		fprintf(stderr, "safe-run-init: usage: safe-run-init -- COMMAND [ARG...]\n");
		return 125;
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		perror("safe-run-init: making itself non-dumpable");
		return 125;
	}
	/* Every signal is blocked and taken with sigwaitinfo, so none is lost
	 * between the fork and the loop, and none interrupts it. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);

	child = fork();
	if (child < 0) {
		perror("safe-run-init: fork");
		return 125;
	}
	if (child == 0) {
		/* The service leads its own process group and takes the
		 * terminal, if there is one, so that ^C reaches it as it would
		 * outside. tcsetpgrp from a background group raises SIGTTOU,
		 * which is still blocked here. */
		setpgid(0, 0);
		if (isatty(STDIN_FILENO))
			tcsetpgrp(STDIN_FILENO, getpid());
		sigprocmask(SIG_SETMASK, &old, NULL);
		execvp(argv[first], argv + first);
		int e = errno;
		fprintf(stderr, "safe-run-init: cannot run %s: %s\n", argv[first], strerror(e));
		_exit(e == ENOENT || e == ENOTDIR ? 127 : 126);
	}

	for (;;) {
		siginfo_t info;
		int sig = sigwaitinfo(&all, &info);
		if (sig < 0)
			continue; /* EINTR */
		if (sig != SIGCHLD) {
			/* To the service only: it decides what its own children
			 * get, as it would outside a container. */
			kill(child, sig);
			continue;
		}
		for (;;) {
			int status;
			pid_t pid = waitpid(-1, &status, WNOHANG);
			if (pid <= 0)
				break;
			if (WIFSTOPPED(status)) {
				/* A process that made its parent, this init, its
				 * tracer (PTRACE_TRACEME) stops at each signal, and
				 * the stop is reported here. It is not an exit: let
				 * it go on with its signal, untraced, as no debugger
				 * is here to trace it. */
				ptrace(PTRACE_DETACH, pid, (void *)0, (void *)(long)WSTOPSIG(status));
				continue;
			}
			if (pid != child)
				continue; /* an orphan, reaped */
			if (WIFSIGNALED(status))
				return 128 + WTERMSIG(status);
			return WEXITSTATUS(status);
		}
	}
}
