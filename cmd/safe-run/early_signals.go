package main

// #include <pthread.h>
// #include <sched.h>
// #include <signal.h>
// #include <stdlib.h>
// #include <string.h>
// #include <time.h>
//
// /* The signals noted before main subscribed to them, in order. */
// static volatile sig_atomic_t early_sigs[64];
// static volatile sig_atomic_t early_n;
// static char early_wanted[65];     /* given the recorder by the constructor */
// static struct sigaction early_go[65]; /* the runtime's handlers, set aside */
// static char early_swapped[65];
// static int early_done;            /* the swap is over (or never began) */
// static int early_last;            /* the highest signal given the recorder */
//
// static void early_record(int sig)
// {
// 	/* sa_mask is full: no other handler runs meanwhile. */
// 	if (early_n < 64)
// 		early_sigs[early_n++] = sig;
// }
//
// static void early_recorder(struct sigaction *sa)
// {
// 	memset(sa, 0, sizeof(*sa));
// 	sa->sa_handler = early_record;
// 	/* On a Go thread, off the goroutine's small stack. */
// 	sa->sa_flags = SA_RESTART | SA_ONSTACK;
// 	sigfillset(&sa->sa_mask);
// }
//
// /*
//  * Go's runtime replaces every handler with its own before any Go code
//  * runs (initsig, in ascending order of signal); this thread waits for
//  * that, sets the runtime's handlers aside and puts the recorder back,
//  * until main has subscribed and restores them (early_restore).
//  */
// static void *early_swap(void *arg)
// {
// 	struct sigaction cur, rec;
// 	struct timespec start, now;
// 	int sig, late = 0;
//
// 	(void)arg;
// 	early_recorder(&rec);
// 	clock_gettime(CLOCK_MONOTONIC, &start);
// 	for (sig = 1; sig <= early_last; sig++) {
// 		/* 34: the runtime leaves it to the C library, and the
// 		 * recorder stays until the launcher takes it. */
// 		if (!early_wanted[sig] || sig == 34)
// 			continue;
// 		/* Each as soon as the runtime has taken it: yielding, not
// 		 * sleeping, whose slack (50 us) is a window the runtime's
// 		 * handler ends safe-run in (SIGTERM). 200 ms at most in all,
// 		 * which main may wait for: should a runtime leave a signal
// 		 * to the C library, the rest is the runtime's from then on. */
// 		while (!late && sigaction(sig, NULL, &cur) == 0 && cur.sa_handler == early_record) {
// 			clock_gettime(CLOCK_MONOTONIC, &now);
// 			late = (now.tv_sec - start.tv_sec) * 1000000000L + (now.tv_nsec - start.tv_nsec) >= 200000000L;
// 			sched_yield();
// 		}
// 		if (sigaction(sig, NULL, &cur) != 0 || cur.sa_handler == early_record)
// 			continue;
// 		early_go[sig] = cur;
// 		if (sigaction(sig, &rec, NULL) == 0)
// 			early_swapped[sig] = 1;
// 	}
// 	__atomic_store_n(&early_done, 1, __ATOMIC_RELEASE);
// 	return NULL;
// }
//
// __attribute__((constructor)) static void safe_run_early_signals(void)
// {
// 	struct sigaction rec, old;
// 	pthread_t t;
// 	pthread_attr_t attr;
// 	int sig;
//
// 	/*
// 	 * libcontainer's init (nsexec), and an inner safe-run joining the
// 	 * user's namespaces (internal/rootless), need a process of one
// 	 * thread in their constructors; and neither is a start's business.
// 	 */
// 	if (getenv("_LIBCONTAINER_INITPIPE") != NULL || getenv("_SAFE_RUN_ROOTLESS_JOIN") != NULL) {
// 		early_done = 1;
// 		return;
// 	}
// 	early_recorder(&rec);
// 	for (sig = 1; sig < 65; sig++) {
// 		switch (sig) {
// 		case SIGKILL: case SIGSTOP: /* cannot be caught */
// 		case SIGILL: case SIGTRAP: case SIGABRT: case SIGBUS: case SIGFPE:
// 		case SIGSEGV: case SIGSYS: case SIGXCPU: case SIGXFSZ: case SIGPROF:
// 		case SIGPIPE: /* the kernel's, for this process's own doing */
// 		case SIGCHLD: case SIGURG: case SIGWINCH: case SIGCONT: /* ignored by default; SIGURG preempts goroutines */
// 		case SIGTSTP: case SIGTTIN: case SIGTTOU: /* job control */
// 		case 32: case 33: /* the C library's */
// 			continue;
// 		}
// 		/* An ignored signal stays ignored (nohup), as Go keeps it. */
// 		if (sigaction(sig, NULL, &old) == 0 && old.sa_handler == SIG_IGN)
// 			continue;
// 		if (sigaction(sig, &rec, NULL) == 0) {
// 			early_wanted[sig] = 1;
// 			early_last = sig;
// 		}
// 	}
// 	pthread_attr_init(&attr);
// 	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
// 	if (early_last == 0 || pthread_create(&t, &attr, early_swap, NULL) != 0)
// 		early_done = 1;
// 	pthread_attr_destroy(&attr);
// }
//
// /* early_restore gives the runtime its handlers back and returns how
//  * many signals were noted. */
// static int early_restore(void)
// {
// 	struct timespec pause = {0, 20000};
// 	int sig;
//
// 	while (!__atomic_load_n(&early_done, __ATOMIC_ACQUIRE))
// 		nanosleep(&pause, NULL);
// 	for (sig = 1; sig < 65; sig++) {
// 		if (early_swapped[sig]) {
// 			sigaction(sig, &early_go[sig], NULL);
// 			early_swapped[sig] = 0;
// 		}
// 	}
// 	return early_n;
// }
//
// static int early_at(int i) { return early_sigs[i]; }
import "C"

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// A signal sent to safe-run right after its exec arrives while Go's
// runtime starts, before any Go code runs. With the default action it
// ended safe-run (SIGTERM, SIGUSR1); once the runtime's handlers were in,
// before main subscribed, the runtime dropped it (SIGUSR1) or still
// ended safe-run (SIGTERM, SIGHUP): a signal in a start's first 2 ms was
// lost or killed safe-run. The constructor above runs before the runtime
// and notes each signal; a thread of its own puts that back once the
// runtime has replaced it, until main has subscribed (earlySignals).
// A start hands them to the service as any other, every other command
// gets them again as they would have come (raiseEarlySignals).
//
// Blocking the signals instead would have needed no thread, but Go keeps
// the mask it starts with for every thread it makes and every child it
// starts from one: the service, the janitor and pasta would have started
// with those signals blocked.

// earlySignals gives Go's runtime its handlers back, and returns the
// signals noted until then, in the order they came. Call it once, when
// every signal is subscribed to.
func earlySignals() []os.Signal {
	n := int(C.early_restore())
	sigs := make([]os.Signal, 0, n)
	for i := range n {
		sigs = append(sigs, syscall.Signal(C.early_at(C.int(i))))
	}
	return sigs
}

// raiseEarlySignals is earlySignals for a command that is no start: the
// signals noted are sent to this process again, which meets them as it
// would have without the constructor (SIGTERM ends it).
func raiseEarlySignals() {
	for _, sig := range earlySignals() {
		_ = unix.Kill(unix.Getpid(), sig.(syscall.Signal))
	}
}
