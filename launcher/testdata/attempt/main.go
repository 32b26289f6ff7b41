// Command attempt tries operations a confined service should or should not
// be able to do, and prints one line per operation: what it tried, then
// "ok" or the errno's name. The guest tests run it inside containers, where
// the errno tells which layer refused: EACCES from AppArmor, EPERM from a
// missing capability, EROFS from a read-only mount.
//
// Usage: attempt OP... where OP is write:PATH, read:PATH, exec:PATH,
// mount:PATH (a tmpfs), umount:PATH, pivot_root:PATH (with PATH/old), raw
// (an ICMP raw socket) or packet.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

func main() {
	for _, op := range os.Args[1:] {
		verb, arg, _ := strings.Cut(op, ":")
		fmt.Printf("%s: %s\n", op, result(try(verb, arg)))
	}
}

func try(verb, arg string) error {
	switch verb {
	case "write":
		f, err := os.OpenFile(arg, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return err
		}
		_, err = f.WriteString("x\n")
		f.Close()
		return err
	case "read":
		_, err := os.ReadFile(arg)
		return err
	case "exec":
		return exec.Command(arg, "true").Run()
	case "mount":
		return unix.Mount("none", arg, "tmpfs", 0, "size=1m")
	case "umount":
		return unix.Unmount(arg, 0)
	case "pivot_root":
		return unix.PivotRoot(arg, arg+"/old")
	case "raw":
		return closeSocket(unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP))
	case "packet":
		return closeSocket(unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0x0300)) // htons(ETH_P_ALL)
	}
	return fmt.Errorf("unknown operation %q", verb)
}

func closeSocket(fd int, err error) error {
	if err == nil {
		unix.Close(fd)
	}
	return err
}

func result(err error) string {
	var errno unix.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return unix.ErrnoName(errno)
	}
	return err.Error()
}
