#include <linux/filter.h>
#include <pthread.h>

/* One capture of the seccomp program libcontainer would load (see
 * seccomp_linux.c). */
struct safe_run_capture {
	int listener; /* user notifications of the capturing thread's filter */
	int cancel;   /* readable once the set-up has returned */
	int err;      /* 0 once the program is here, else an errno */
	unsigned int answer_delay_us; /* tests: how long each answer takes */
	unsigned int flags;
	unsigned short len;
	struct sock_filter insns[BPF_MAXINSNS];
};

int safe_run_capture_start(struct safe_run_capture *c, pthread_t *t);
int safe_run_capture_wait(pthread_t t);
