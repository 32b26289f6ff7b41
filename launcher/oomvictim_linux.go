package launcher

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// monotonic is now on the clock the kernel's log stamps its records with
// (printk's local_clock, which runs with CLOCK_MONOTONIC).
func monotonic() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

// oomVictims names the processes the kernel's OOM killer took in the
// memory cgroup at dir (a cgroup directory, v1 or v2) since the monotonic
// time since, as "sh (host pid 30104)", from the kernel's log: its
// one-line summary of each kill (mm/oom_kill.c, dump_oom_victim) names the
// cgroup, the task and its pid. No cgroup file says which process went.
// What it cannot read it does not name: /dev/kmsg wants root where
// kernel.dmesg_restrict is set (rootless), and the kernel prints the
// summary at most 10 times in 5 s, host-wide (oom_rs).
//
// It returns the time of the last one named, from which to read next
// time (since, if none): a reader that goes on never names one twice,
// and keeps nothing per kill.
func oomVictims(dir string, since time.Duration) (victims []string, last time.Duration) {
	last = since
	if dir == "" {
		return nil, last
	}
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, last
	}
	defer unix.Close(fd)
	// One record a read, from the oldest the ring still holds; a
	// record longer than buf is EINVAL, and skipped.
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case errors.Is(err, unix.EPIPE), errors.Is(err, unix.EINTR), errors.Is(err, unix.EINVAL):
			continue // overwritten while read, or too long: on to the next
		case err != nil || n <= 0:
			return victims, last // EAGAIN: the end
		}
		if v, at, ok := oomVictim(string(buf[:n]), dir, since); ok {
			victims = append(victims, v)
			last = at + time.Microsecond
		}
	}
}

// oomVictim reads one /dev/kmsg record ("PRIO,SEQ,USEC,FLAGS;MESSAGE",
// then lines of its dictionary): a kill summary of the OOM killer's,
// "oom-kill:constraint=...,oom_memcg=/a/b,task_memcg=/a/b,task=sh,pid=1,uid=0",
// at or after since in the cgroup at dir, says "sh (host pid 1)", and
// when it was.
func oomVictim(rec, dir string, since time.Duration) (string, time.Duration, bool) {
	head, msg, ok := strings.Cut(rec, ";")
	f := strings.Split(head, ",")
	if !ok || len(f) < 3 {
		return "", 0, false
	}
	usec, err := strconv.ParseInt(f[2], 10, 64)
	at := time.Duration(usec) * time.Microsecond
	if err != nil || at < since {
		return "", 0, false
	}
	msg, _, _ = strings.Cut(msg, "\n")
	if !strings.HasPrefix(msg, "oom-kill:") {
		return "", 0, false
	}
	// From the end: a task's name may hold commas, and so may the
	// nodemask; the cgroup paths are safe-run's, under the host's.
	t := strings.LastIndex(msg, ",task=")
	if t < 0 {
		return "", 0, false
	}
	task, rest := msg[t+len(",task="):], msg[:t]
	p := strings.LastIndex(task, ",pid=")
	if p < 0 {
		return "", 0, false
	}
	comm, pid := task[:p], task[p+len(",pid="):]
	pid, _, _ = strings.Cut(pid, ",")
	// oom_memcg is the cgroup whose limit was hit; a global OOM kill
	// has only task_memcg, the victim's.
	var memcgs []string
	if i := strings.LastIndex(rest, ",task_memcg="); i >= 0 {
		memcgs = append(memcgs, rest[i+len(",task_memcg="):])
		rest = rest[:i]
	}
	if i := strings.LastIndex(rest, ",oom_memcg="); i >= 0 {
		memcgs = append(memcgs, rest[i+len(",oom_memcg="):])
	}
	// The kernel prints the path below the hierarchy's root: dir is
	// that path under the hierarchy's mount point (/sys/fs/cgroup, or
	// /sys/fs/cgroup/CONTROLLER on v1).
	dir = strings.TrimSuffix(dir, "/")
	for _, m := range memcgs {
		mount, ok := strings.CutSuffix(dir, m)
		if !ok || !strings.HasPrefix(m, "/") || m == "/" {
			continue
		}
		if under, ok := strings.CutPrefix(mount, "/sys/fs/cgroup"); ok && (under == "" || strings.Count(under, "/") == 1 && strings.HasPrefix(under, "/")) {
			return comm + " (host pid " + pid + ")", at, true
		}
	}
	return "", 0, false
}
