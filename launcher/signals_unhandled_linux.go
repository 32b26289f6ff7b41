package launcher

// #include <errno.h>
// #include <signal.h>
// #include <unistd.h>
//
// static int unhandled_fd = -1;
//
// static void on_unhandled(int sig)
// {
// 	int saved = errno;
// 	unsigned char b = (unsigned char)sig;
// 	if (write(unhandled_fd, &b, 1) < 0) {
// 		/* full: the signal is dropped, as the runtime drops its own */
// 	}
// 	errno = saved;
// }
//
// static int catch_unhandled(int sig, int fd)
// {
// 	struct sigaction sa = {0};
// 	unhandled_fd = fd;
// 	sa.sa_handler = on_unhandled;
// 	sa.sa_flags = SA_ONSTACK | SA_RESTART;
// 	sigfillset(&sa.sa_mask);
// 	return sigaction(sig, &sa, NULL);
// }
import "C"

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Go's runtime leaves signals 32 to 34 to the C library: signal.Notify
// does not catch them, and the default action of two would end safe-run.
// The cgo here saves no time: it is the only way to keep signal 34 from
// killing safe-run (and its container) and to forward it to the service.
//   - 34 (glibc's SIGRTMIN): a C handler takes it and hands it over through
//     a pipe, to be forwarded as any other.
//   - 32 (glibc's SIGCANCEL, which nothing in safe-run uses): glibc lets no
//     handler be set for it; it is ignored.
//   - 33 (glibc's SIGSETXID) is glibc's, which ignores it from others.
const ignoredRT = 32

var (
	unhandledOnce sync.Once
	unhandledTo   atomic.Pointer[chan os.Signal] // the latest subscription's channel
)

// catchUnhandled has signal 34 delivered to c, as signal.Notify would,
// and signal 32 ignored.
func catchUnhandled(c chan os.Signal) {
	unhandledTo.Store(&c)
	unhandledOnce.Do(func() {
		var p [2]int
		if unix.Pipe2(p[:], unix.O_CLOEXEC) != nil {
			return
		}
		// The handler must never block: a full pipe drops the signal.
		// The reading end waits in the runtime's poller, not on a
		// thread of its own.
		if unix.SetNonblock(p[1], true) != nil || unix.SetNonblock(p[0], true) != nil {
			unix.Close(p[0])
			unix.Close(p[1])
			return
		}
		C.catch_unhandled(C.int(sigRTMIN), C.int(p[1]))
		// Raw: glibc's sigaction refuses its own signals. SIG_IGN needs
		// no handler, and so no restorer.
		ignore := [4]uintptr{1} // struct kernel_sigaction {handler SIG_IGN, flags, restorer, mask}
		_, _, _ = unix.RawSyscall6(unix.SYS_RT_SIGACTION, ignoredRT, uintptr(unsafe.Pointer(&ignore)), 0, 8, 0, 0)
		r := os.NewFile(uintptr(p[0]), "signal 34")
		go func() {
			b := make([]byte, 1)
			for {
				if _, err := r.Read(b); err != nil {
					return
				}
				select {
				case *unhandledTo.Load() <- syscall.Signal(b[0]):
				default: // full, as signal.Notify drops
				}
			}
		}()
	})
}
