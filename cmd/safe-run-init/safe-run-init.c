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
 * With --control-fd, a socket to safe-run (launcher/initlink_linux.go):
 *  - it first reads the container's seccomp filter, which safe-run
 *    compiled (launcher/seccomp_linux.go): the SECCOMP_SET_MODE_FILTER
 *    flags, 0 for prctl(PR_SET_SECCOMP), and the number of instructions,
 *    each a native 32-bit word, then the instructions; no instructions
 *    when libcontainer loaded the filter itself. It loads it before the
 *    fork, so the service and this init both run under it. Anything short
 *    of a whole program, and the service does not start: it never runs
 *    unfiltered.
 *  - then the service's Landlock ruleset (landlock/show.go, Encode): the
 *    ABI, 0 for none, and nothing else follows; the landlock_restrict_self
 *    flags; the handled file system and network rights and the scopes;
 *    the number of path rules and of port rules; each path rule (rights,
 *    length, path inside the container), each port rule (rights, port).
 *    It opens each path (O_PATH; one that does not exist is skipped: what
 *    is not there gets only what its parent's rule grants), adds the
 *    rules and restricts itself, before seccomp: the service and this
 *    init both run under the ruleset, and the filter, once loaded, may
 *    not allow the landlock system calls. Anything short of a whole
 *    ruleset, or a rule the kernel refuses, and the service does not
 *    start.
 *  - it answers one byte once it takes signals: safe-run holds the
 *    service's signals until then, as libcontainer's init, which runs
 *    before this one, dies of most.
 *  - it keeps the socket (close-on-exec: the service never has it), and
 *    when safe-run's end closes, safe-run is gone, killed: the service is
 *    killed too. A parent-death signal cannot do that job: the container's
 *    parent is whichever of safe-run's threads started it, and that
 *    thread may end long before safe-run does.
 *
 * With --no-init after --control-fd N (init = false, where a Landlock
 * ruleset must still be applied between the mounts and the service's
 * first instruction), it reads and loads the same seccomp filter and
 * ruleset, then executes the service in its own place: no init process
 * stays, the service is PID 1 as with init = false, and the socket,
 * close-on-exec, closes at that exec, which tells safe-run the service
 * now takes its signals (see exec_service).
 *
 * With --exec-fd, it is `safe-run exec`'s first program in a running
 * container (launcher/exec_linux.go), not an init: it reads the same
 * seccomp program and Landlock ruleset the service's init got, from that
 * descriptor, in the same format, applies them in the same order, and
 * execs the command itself (no fork, no signal forwarding: the command is
 * not PID 1). One filter and ruleset for the service and for exec, applied
 * by one piece of code, rather than a second filter of libcontainer's
 * that could differ. Anything short of a whole program or ruleset, and the
 * command does not run (exit 125).
 *
 * Usage: safe-run-init [--control-fd N [--no-init]] -- COMMAND [ARG...]
 *        safe-run-init --exec-fd N -- COMMAND [ARG...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* From <linux/filter.h> and <linux/seccomp.h>, which musl does not ship. */
#define MAX_INSNS 4096 /* BPF_MAXINSNS */
#define SECCOMP_MODE_FILTER 2
#define SECCOMP_SET_MODE_FILTER 1
struct sock_filter {
	uint16_t code;
	uint8_t jt, jf;
	uint32_t k;
};
struct sock_fprog {
	unsigned short len;
	struct sock_filter *filter;
};

static int read_full(int fd, void *buf, size_t n)
{
	char *p = buf;
	while (n > 0) {
		ssize_t r = read(fd, p, n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* read_seccomp reads the seccomp program from safe-run; load_seccomp
 * loads it. */
static struct sock_filter insns[MAX_INSNS];
static uint32_t seccomp_head[2]; /* flags, instruction count */

static int read_seccomp(int fd)
{
	if (read_full(fd, seccomp_head, sizeof seccomp_head) < 0 || seccomp_head[1] > MAX_INSNS ||
	    read_full(fd, insns, seccomp_head[1] * sizeof *insns) < 0) {
		fprintf(stderr, "safe-run-init: the seccomp filter did not arrive whole: not starting the service\n");
		return -1;
	}
	return 0;
}

static int load_seccomp(void)
{
	struct sock_fprog prog;
	long r;

	if (seccomp_head[1] == 0)
		return 0; /* libcontainer loaded it, or there is none */
	prog.len = (unsigned short)seccomp_head[1];
	prog.filter = insns;
	if (seccomp_head[0] == 0)
		r = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
	else
		r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, seccomp_head[0], &prog);
	if (r < 0) {
		perror("safe-run-init: loading the seccomp filter");
		return -1;
	}
	return 0;
}

/* From <linux/landlock.h>, which musl does not ship; the system call
 * numbers are the same on every architecture. */
#define SYS_LL_CREATE_RULESET 444
#define SYS_LL_ADD_RULE 445
#define SYS_LL_RESTRICT_SELF 446
#define LL_RULE_PATH_BENEATH 1
#define LL_RULE_NET_PORT 2
#define LL_MAX_RULES 4096 /* landlock/show.go maxRules */
/* The rights a rule on anything but a directory may hold: execute, write
 * file, read file, truncate, ioctl on devices. */
#define LL_FILE_RIGHTS ((1ULL << 0) | (1ULL << 1) | (1ULL << 2) | (1ULL << 14) | (1ULL << 15))
struct ll_ruleset_attr {
	uint64_t handled_access_fs, handled_access_net, scoped;
};
struct ll_path_beneath_attr {
	uint64_t allowed_access;
	int32_t parent_fd;
} __attribute__((packed));
struct ll_net_port_attr {
	uint64_t allowed_access, port;
};

/* The paths the ruleset lets run programs (execute, bit 0): the image's
 * own entries. A program elsewhere (a bind, a volume, a tmpfs without
 * exec) cannot be run, and the EACCES says so (exec_failed). */
#define LL_EXECUTE 1ULL
#define LL_MAX_EXEC_PATHS 512
static char *exec_paths[LL_MAX_EXEC_PATHS];
static unsigned n_exec_paths;
static int landlock_on;

static void note_exec_path(const char *path, uint64_t rights)
{
	if (!(rights & LL_EXECUTE) || n_exec_paths >= LL_MAX_EXEC_PATHS)
		return;
	exec_paths[n_exec_paths] = strdup(path);
	/* Out of memory (or brk and mmap refused by a filter libcontainer
	 * loaded first): the list is incomplete, and says nothing. */
	n_exec_paths = exec_paths[n_exec_paths] ? n_exec_paths + 1 : LL_MAX_EXEC_PATHS;
}

/* landlock_denies_exec says whether the ruleset grants no execute on
 * path (absolute): no rule on it or on a directory above it. With more
 * execute rules than were kept, it cannot tell, and says no. */
static int landlock_denies_exec(const char *path)
{
	unsigned i;
	if (!landlock_on || path[0] != '/' || n_exec_paths >= LL_MAX_EXEC_PATHS)
		return 0;
	for (i = 0; i < n_exec_paths; i++) {
		size_t n = strlen(exec_paths[i]);
		if (strcmp(exec_paths[i], "/") == 0)
			return 0;
		if (strncmp(path, exec_paths[i], n) == 0 && (path[n] == 0 || path[n] == '/'))
			return 0;
	}
	return 1;
}

/* exec_failed reports why the service could not be executed, and returns
 * docker run's code for it: 127 not found, 126 not executable. */
static int exec_failed(const char *cmd, int e)
{
	if (e == EACCES && landlock_denies_exec(cmd))
		fprintf(stderr, "safe-run-init: cannot run %s: Landlock denied execute: only the image's own files may be run, "
				"not those of a bind, volume or secret, nor of a tmpfs without exec (copy the program into the image, "
				"or mount a tmpfs with options = [\"exec\"] and put it there)\n", cmd);
	else
		fprintf(stderr, "safe-run-init: cannot run %s: %s\n", cmd, strerror(e));
	return e == ENOENT || e == ENOTDIR ? 127 : 126;
}

static int landlock_short(void)
{
	fprintf(stderr, "safe-run-init: the Landlock ruleset did not arrive whole: not starting the service\n");
	return -1;
}

/* load_landlock reads the ruleset from safe-run and restricts this
 * process, and so the service, to it. */
static int load_landlock(int fd)
{
	static char path[4096];
	struct {
		uint32_t abi, flags;
		uint64_t fs, net, scoped;
		uint32_t npaths, nports;
	} __attribute__((packed)) head;
	struct ll_ruleset_attr attr;
	uint32_t i;
	int rfd;

	if (read_full(fd, &head.abi, sizeof head.abi) < 0)
		return landlock_short();
	if (head.abi == 0)
		return 0;
	if (read_full(fd, (char *)&head + sizeof head.abi, sizeof head - sizeof head.abi) < 0 ||
	    head.npaths > LL_MAX_RULES || head.nports > LL_MAX_RULES)
		return landlock_short();
	attr.handled_access_fs = head.fs;
	attr.handled_access_net = head.net;
	attr.scoped = head.scoped;
	/* A kernel older than the struct takes it when the fields it does
	 * not know are 0 (copy_struct_from_user), as they are below ABI 4. */
	rfd = (int)syscall(SYS_LL_CREATE_RULESET, &attr, sizeof attr, 0);
	if (rfd < 0) {
		perror("safe-run-init: Landlock: creating the ruleset");
		return -1;
	}
	for (i = 0; i < head.npaths; i++) {
		struct ll_path_beneath_attr pb;
		struct stat st;
		uint32_t len;
		if (read_full(fd, &pb.allowed_access, sizeof pb.allowed_access) < 0 ||
		    read_full(fd, &len, sizeof len) < 0 || len == 0 || len >= sizeof path ||
		    read_full(fd, path, len) < 0)
			return landlock_short();
		path[len] = 0;
		pb.parent_fd = open(path, O_PATH | O_CLOEXEC);
		if (pb.parent_fd < 0 && errno == ENOENT)
			continue;
		if (pb.parent_fd < 0 || fstat(pb.parent_fd, &st) < 0) {
			fprintf(stderr, "safe-run-init: Landlock: opening %s: %s: not starting the service\n", path, strerror(errno));
			return -1;
		}
		/* A mount of one file takes only the rights of a file. */
		if (!S_ISDIR(st.st_mode))
			pb.allowed_access &= LL_FILE_RIGHTS;
		note_exec_path(path, pb.allowed_access);
		if (pb.allowed_access != 0 && syscall(SYS_LL_ADD_RULE, rfd, LL_RULE_PATH_BENEATH, &pb, 0) < 0) {
			fprintf(stderr, "safe-run-init: Landlock: the rule on %s: %s: not starting the service\n", path, strerror(errno));
			return -1;
		}
		close(pb.parent_fd);
	}
	for (i = 0; i < head.nports; i++) {
		struct ll_net_port_attr np;
		if (read_full(fd, &np, sizeof np) < 0)
			return landlock_short();
		if (syscall(SYS_LL_ADD_RULE, rfd, LL_RULE_NET_PORT, &np, 0) < 0) {
			fprintf(stderr, "safe-run-init: Landlock: the rule on TCP port %llu: %s: not starting the service\n",
				(unsigned long long)np.port, strerror(errno));
			return -1;
		}
	}
	if (syscall(SYS_LL_RESTRICT_SELF, rfd, head.flags) < 0) {
		perror("safe-run-init: Landlock: restricting itself");
		return -1;
	}
	/* Execute is handled only when the ruleset handles it (bit 0). */
	landlock_on = (head.fs & LL_EXECUTE) != 0;
	close(rfd);
	return 0;
}

/* watch_control has safe-run's end of the socket closing come as SIGIO,
 * to the signal loop, and tells safe-run that signals are taken. */
static int watch_control(int fd)
{
	if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 || fcntl(fd, F_SETOWN, getpid()) < 0 ||
	    fcntl(fd, F_SETSIG, SIGIO) < 0 || fcntl(fd, F_SETFL, O_NONBLOCK | O_ASYNC) < 0) {
		perror("safe-run-init: watching the socket to safe-run");
		return -1;
	}
	/* Fails if safe-run is gone already: then nothing starts. */
	if (write(fd, "r", 1) != 1) {
		perror("safe-run-init: telling safe-run it takes signals");
		return -1;
	}
	return 0;
}

/* safe_run_gone says whether safe-run's end of the socket has closed. */
static int safe_run_gone(int fd)
{
	char c;
	ssize_t n = read(fd, &c, 1);
	return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

/* exec_service is --no-init and --exec-fd: the confinement is loaded;
 * the service (or exec's command) replaces this program. Nothing is
 * written to safe-run: the socket closing at the exec is the word, and
 * should the exec fail, this program's exit closes it as well (--exec-fd
 * has closed its descriptor already: control is -1). Dumpability comes
 * back with the exec (the kernel resets it for an exec that gains no
 * privilege). */
static int exec_service(int control, sigset_t *old, char **argv)
{
	if (control >= 0 && fcntl(control, F_SETFD, FD_CLOEXEC) < 0) {
		perror("safe-run-init: closing the socket to safe-run at the exec");
		return 125;
	}
	sigprocmask(SIG_SETMASK, old, NULL);
	execvp(argv[0], argv);
	return exec_failed(argv[0], errno);
}

int main(int argc, char **argv)
{
	int first = 1, control = -1, in_place = 0;
	sigset_t all, old;
	pid_t child;

	/* Every signal is blocked and taken with sigwaitinfo, so none is lost
	 * before the loop, and none interrupts it. Every one: not sigfillset,
	 * which leaves out the three musl keeps for its threads (32-34),
	 * which this single thread does not use; to this PID 1 a signal not
	 * blocked and not handled is dropped. */
	memset(&all, 0xff, sizeof all);
	sigprocmask(SIG_SETMASK, &all, &old);

	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0) {
		perror("safe-run-init: making itself non-dumpable");
		return 125;
	}
	if (argc > 2 && strcmp(argv[1], "--control-fd") == 0) {
		control = atoi(argv[2]);
		first = 3;
		in_place = first < argc && strcmp(argv[first], "--no-init") == 0;
		if (read_seccomp(control) < 0 || load_landlock(control) < 0 || load_seccomp() < 0 ||
		    (!in_place && watch_control(control) < 0))
			return 125;
		first += in_place;
	}
	if (argc > 2 && strcmp(argv[1], "--exec-fd") == 0) {
		int fd = atoi(argv[2]);
		if (read_seccomp(fd) < 0 || load_landlock(fd) < 0 || load_seccomp() < 0)
			return 125;
		close(fd);
		first = 3;
		in_place = 1;
	}
	if (first < argc && strcmp(argv[first], "--") == 0)
		first++;
	if (first >= argc) {
		fprintf(stderr, "safe-run-init: usage: safe-run-init [--control-fd N [--no-init]] -- COMMAND [ARG...]\n"
				"       safe-run-init --exec-fd N -- COMMAND [ARG...]\n");
		return 125;
	}
	if (in_place)
		return exec_service(control, &old, argv + first);

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
		_exit(exec_failed(argv[first], errno));
	}

	for (;;) {
		siginfo_t info;
		int sig = sigwaitinfo(&all, &info);
		if (sig < 0)
			continue; /* EINTR */
		if (sig == SIGIO && info.si_code > 0 && info.si_fd == control) {
			/* From the kernel, about the socket (a forwarded SIGIO
			 * comes from a process: si_code <= 0). */
			if (safe_run_gone(control)) {
				/* The PID namespace ends with this init. */
				kill(child, SIGKILL);
				return 128 + SIGKILL;
			}
			continue;
		}
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
