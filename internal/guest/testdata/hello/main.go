// Command hello proves that guest.BuildStatic links cgo and libseccomp
// statically: it prints libseccomp's version, then loads a filter that makes
// getppid(2) fail with EPERM and checks that it does.
package main

/*
#cgo pkg-config: libseccomp
#include <errno.h>
#include <seccomp.h>
#include <sys/syscall.h>
#include <unistd.h>

// deny_getppid returns 0 if a filter denying getppid loaded and took effect.
// It runs on one thread, so the filter binds only that thread, which is all
// the check needs.
static int deny_getppid(void) {
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (ctx == NULL)
		return -1;
	int rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(getppid), 0);
	if (rc == 0)
		rc = seccomp_load(ctx);
	seccomp_release(ctx);
	if (rc != 0)
		return rc;
	errno = 0;
	if (syscall(SYS_getppid) != -1 || errno != EPERM)
		return -2;
	return 0;
}
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	v := C.seccomp_version()
	fmt.Printf("hello from a static cgo binary, libseccomp %d.%d.%d\n", v.major, v.minor, v.micro)
	runtime.LockOSThread()
	if rc := C.deny_getppid(); rc != 0 {
		fmt.Printf("seccomp filter: failed (%d)\n", rc)
		os.Exit(1)
	}
	fmt.Println("seccomp filter: getppid denied")
}
