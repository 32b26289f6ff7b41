//go:build linux

// Command loop measures what a system call costs: it calls getpid(2) and
// read(2) of one byte from /dev/zero, alternately, in rounds, and prints
// the fastest round as
//
//	loop: 123.4 ns/call (getpid+read, 5 rounds of 1000000 calls)
//
// It counts the CPU time of its thread, not the wall clock, so that other
// work on the machine does not count. The seccomp benchmark runs it in
// containers under each profile and compares the figures (see
// profiles/integration).
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	calls := flag.Int("n", 1000000, "calls per round")
	rounds := flag.Int("rounds", 5, "rounds; the fastest counts")
	flag.Parse()
	runtime.LockOSThread()
	f, err := os.Open("/dev/zero")
	if err != nil {
		fmt.Fprintln(os.Stderr, "loop:", err)
		os.Exit(1)
	}
	fd := f.Fd()
	var buf [1]byte
	best := time.Duration(1<<63 - 1)
	for range *rounds {
		start := threadCPU()
		for i := 0; i < *calls; i += 2 {
			unix.RawSyscall(unix.SYS_GETPID, 0, 0, 0)
			if _, _, e := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(&buf[0])), 1); e != 0 {
				fmt.Fprintln(os.Stderr, "loop: read:", e)
				os.Exit(1)
			}
		}
		best = min(best, threadCPU()-start)
	}
	fmt.Printf("loop: %.1f ns/call (getpid+read, %d rounds of %d calls)\n", float64(best.Nanoseconds())/float64(*calls), *rounds, *calls)
}

// threadCPU is the CPU time the thread has used.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		fmt.Fprintln(os.Stderr, "loop: clock_gettime:", err)
		os.Exit(1)
	}
	return time.Duration(ts.Nano())
}
