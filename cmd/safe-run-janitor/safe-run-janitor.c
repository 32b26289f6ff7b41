/*
 * safe-run-janitor cleans up after a safe-run that died without doing so
 * itself (SIGKILL, OOM). safe-run starts it early in a start with a pipe
 * on fd 3 and its name lock on fd 4. On the pipe come the container's
 * cgroup directories, "c" PATH NUL each, once safe-run knows them; then
 * "d" means safe-run cleaned up and the janitor just exits, and
 * end-of-file without it means safe-run is gone: the janitor kills what is
 * left in the cgroups it was told, removes them and the state directories,
 * then drops the lock by exiting. Given --then, it finally executes that
 * program with the --then-arg arguments instead of exiting (safe-run
 * network-cleanup DIR: a bridge service's namespace, veth, lease and
 * firewall rules), the lock still held through the inherited fd 4.
 *
 * It is a separate static C program (against musl), not a mode of
 * safe-run, because it starts with every service and lives as long as it:
 * a Go janitor cost about 5 ms of each start and 2 MiB resident, this one a
 * fraction of a millisecond and a few hundred KiB.
 *
 * Usage: safe-run-janitor --lock PATH [--remove PATH]... [--then PATH [--then-arg ARG]...]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long a cgroup may keep processes that were sent SIGKILL. */
#define CGROUP_DEADLINE_SECONDS 10

static time_t deadline;
static int failed;

static void fail(const char *what, const char *path)
{
	fprintf(stderr, "safe-run-janitor: %s %s: %s\n", what, path, strerror(errno));
	failed = 1;
}

/* thaw writes value to dir/file when the file exists: a frozen task
 * takes its SIGKILL only once thawed, and a safe-run killed while
 * libcontainer froze the cgroup to kill it, or a hand, leaves it frozen. */
static void thaw(const char *dir, const char *file, const char *value)
{
	char path[4096];
	if (snprintf(path, sizeof path, "%s/%s", dir, file) >= (int)sizeof path)
		return;
	FILE *f = fopen(path, "we");
	if (!f)
		return;
	fputs(value, f);
	fclose(f);
}

/* kill_procs sends SIGKILL to every process listed in dir/cgroup.procs. */
static void kill_procs(const char *dir)
{
	char path[4096];
	if (snprintf(path, sizeof path, "%s/cgroup.procs", dir) >= (int)sizeof path)
		return;
	FILE *f = fopen(path, "re");
	if (!f)
		return;
	int pid;
	while (fscanf(f, "%d", &pid) == 1)
		if (pid > 0)
			kill(pid, SIGKILL);
	fclose(f);
}

/* remove_cgroup_dir is called for each directory of a cgroup tree, deepest
 * first: it kills what the cgroup holds and removes it, waiting for the
 * killed processes to be gone. */
static int remove_cgroup_dir(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type != FTW_DP)
		return 0; /* a cgroup's files go with it */
	for (;;) {
		kill_procs(path);
		if (rmdir(path) == 0 || errno == ENOENT)
			return 0;
		if (time(NULL) > deadline) {
			fail("removing cgroup", path);
			return 0;
		}
		nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
	}
}

/* remove_entry removes one entry of a state directory, deepest first. */
static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (type == FTW_DNR || type == FTW_NS) {
		fail("reading", path);
		return 0;
	}
	if (remove(path) != 0 && errno != ENOENT)
		fail("removing", path);
	return 0;
}

/* What safe-run sent: "c" PATH NUL records, and "d" last if dismissed. */
static char sent[64 * 1024];

int main(int argc, char **argv)
{
	const char *lock = NULL;
	char **removes = calloc(argc, sizeof *removes);
	int nremoves = 0;
	/* then[0] is the program, then its arguments, NULL-terminated. */
	char **then = calloc(argc + 1, sizeof *then);
	int nthen = 1;

	if (!removes || !then)
		return 2;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--lock") == 0)
			lock = argv[i + 1];
		else if (strcmp(argv[i], "--remove") == 0)
			removes[nremoves++] = argv[i + 1];
		else if (strcmp(argv[i], "--then") == 0)
			then[0] = argv[i + 1];
		else if (strcmp(argv[i], "--then-arg") == 0)
			then[nthen++] = argv[i + 1];
		else {
			fprintf(stderr, "safe-run-janitor: unknown argument %s\n", argv[i]);
			return 2;
		}
	}
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);

	/* Until end-of-file: safe-run closes the pipe right after "d", or
	 * the kernel does when safe-run dies. */
	size_t len = 0;
	for (;;) {
		ssize_t n = read(3, sent + len, sizeof sent - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	if (len > 0 && sent[len - 1] == 'd')
		return 0; /* safe-run cleaned up itself */

	deadline = time(NULL) + CGROUP_DEADLINE_SECONDS;
	/* Every hierarchy thawed before any is emptied: on cgroup v1 the
	 * freezer is a hierarchy of its own, and a process frozen there
	 * keeps every other cgroup of it busy. Sub-cgroups thaw with their
	 * parent. */
	for (size_t i = 0; i < len; i += strlen(sent + i) + 1) {
		if (sent[i] != 'c' || sent[i + 1] == '\0')
			continue;
		thaw(sent + i + 1, "freezer.state", "THAWED");
		thaw(sent + i + 1, "cgroup.freeze", "0");
	}
	for (size_t i = 0; i < len; i += strlen(sent + i) + 1) {
		/* sent[len] is 0: a record cut short still ends. */
		const char *dir = sent + i + 1;
		if (sent[i] != 'c' || *dir == '\0')
			continue;
		if (nftw(dir, remove_cgroup_dir, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0 && errno != ENOENT)
			fail("walking cgroup", dir);
	}
	/* FTW_PHYS: never through a symlink; FTW_MOUNT: never into another
	 * file system mounted below. */
	for (int i = 0; i < nremoves; i++)
		if (nftw(removes[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) != 0 && errno != ENOENT)
			fail("walking", removes[i]);
	if (lock && !failed)
		unlink(lock);
	if (then[0]) {
		execv(then[0], then);
		fail("running", then[0]);
	}
	return 0;
}
