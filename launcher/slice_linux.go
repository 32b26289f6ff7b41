package launcher

import (
	"log/slog"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// serviceSlice is the EEVDF slice (sched_attr.sched_runtime) of the
// supervisor's threads and, inherited through clone and execve, of every
// process of the service: how long one of them may keep a CPU it shares
// before a task that woke up gets it, which is what a request's every hop
// (the port forwarder, the service's threads) waits for behind a busy
// neighbour. The kernel's default is its base slice times 1 + log2(CPUs)
// (1.4 ms on the 2-CPU development VM, twice that from 8 CPUs); since
// Linux 6.12 a task may ask for its own, from 0.1 to 100 ms (kernel
// Documentation/scheduler/sched-eevdf.rst), needing no privilege. A
// shorter slice gives no more CPU (the weight and the quota decide that),
// only shorter turns: the scheduler switches more often between tasks that
// all want the CPU, and a woken task with the shorter slice preempts one
// with a longer slice at once (the kernel's PREEMPT_SHORT). Measured with
// the soak's hogs beside a web service, in 1 s slices taken in turn
// (README, Reliability): the web's p99 was a median 16% lower with this
// slice than with the kernel's (10 runs of 10), and with plan.CPUShares
// 18% lower than the code before both. A service can set its own
// (sched_setattr); a kernel before 6.12 ignores it.
const serviceSlice = 200 * time.Microsecond

// shortenSlices sets serviceSlice on every thread of this process. A
// thread or process started later inherits the slice of the thread that
// starts it: the Go runtime's threads and the container's init are all
// started by threads that have it.
func shortenSlices(log *slog.Logger) {
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		log.Debug("scheduler slice: listing threads", "err", err)
		return
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil || a.Policy != unix.SCHED_NORMAL && a.Policy != unix.SCHED_BATCH {
			continue // gone, or a policy whose runtime means something else
		}
		if a.Runtime != 0 && a.Runtime <= uint64(serviceSlice) {
			continue
		}
		a.Runtime, a.Flags = uint64(serviceSlice), 0
		if err := unix.SchedSetAttr(tid, a, 0); err != nil {
			log.Debug("scheduler slice", "tid", tid, "err", err)
		}
	}
}
