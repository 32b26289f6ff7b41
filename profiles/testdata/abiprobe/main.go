//go:build amd64

// Command abiprobe makes getpid(2) through one of the 32-bit ABIs an
// amd64 kernel may run, and prints what happened:
//
//	abiprobe i386   int $0x80, i386 call 20
//	abiprobe x32    syscall with the x32 bit set, call 39
//
// A seccomp filter that does not list the ABI's architecture kills the
// calling thread with SIGSYS (libseccomp's bad-architecture action). A Go
// program whose thread is killed hangs rather than exits, so the call is
// made in a child process, which the probe gives up on after a second.
// A kernel that does not run the ABI at all (built without it, or a
// hypervisor that does not route int $0x80) makes the call fault instead:
// "abiprobe i386" then prints "i386 getpid: not run by this kernel".
package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"time"
)

func int80(trap uintptr) uintptr

func syscallX32(trap uintptr) uintptr

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-call" {
		call(os.Args[2])
		return
	}
	if len(os.Args) != 2 || os.Args[1] != "i386" && os.Args[1] != "x32" {
		fmt.Fprintln(os.Stderr, "usage: abiprobe i386|x32")
		os.Exit(2)
	}
	abi := os.Args[1]
	var out bytes.Buffer
	c := exec.Command("/proc/self/exe", "-call", abi)
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		switch {
		case err != nil && bytes.Contains(out.Bytes(), []byte("signal SIGSEGV")):
			fmt.Printf("%s getpid: not run by this kernel (the call faulted)\n", abi)
			return
		case err != nil:
			fmt.Printf("%s getpid: %v\n", abi, err)
			return
		}
		fmt.Print(out.String())
	case <-time.After(time.Second):
		c.Process.Kill()
		<-done
		fmt.Printf("%s getpid: no answer, the thread was killed\n", abi)
	}
}

func call(abi string) {
	var r uintptr
	if abi == "i386" {
		r = int80(20)
	} else {
		r = syscallX32(0x40000000 | 39)
	}
	if e := int64(r); e < 0 && e > -4096 {
		fmt.Printf("%s getpid: errno %d\n", abi, -e)
		return
	}
	fmt.Printf("%s getpid: pid %d\n", abi, r)
}
