// Command goserver is a small static Go server. TestStrictProfileRuns
// builds it with CGO_ENABLED=0 and runs it under the strict seccomp
// profile: what it does must work there, and what it tries that the
// profile denies must fail the way the profile says.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	for _, step := range []struct {
		name string
		run  func() error
	}{
		{"http", serveHTTP},
		{"udp", udpEcho},
		{"unix", unixEcho},
		{"interfaces", interfaces},
		{"files", files},
		{"goroutines", goroutines},
		{"signals", signals},
		{"exec", execChild},
		{"denied", denied},
	} {
		if err := step.run(); err != nil {
			fmt.Fprintf(os.Stderr, "goserver: %s: %v\n", step.name, err)
			os.Exit(1)
		}
	}
	fmt.Println("goserver ok")
}

func serveHTTP() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "pong")
	})}
	go srv.Serve(ln)
	defer srv.Close()
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if string(body) != "pong" {
		return fmt.Errorf("got %q, want pong", body)
	}
	return nil
}

func udpEcho() error {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer pc.Close()
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "ping" {
		return fmt.Errorf("got %q, want ping", buf[:n])
	}
	return nil
}

func unixEcho() error {
	dir, err := os.MkdirTemp("", "goserver")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			io.Copy(c, c)
			c.Close()
		}
	}()
	c, err := net.Dial("unix", filepath.Join(dir, "sock"))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	return nil
}

// interfaces lists network interfaces, which Go does over route netlink.
func interfaces() error {
	ifs, err := net.Interfaces()
	if err != nil {
		return err
	}
	if len(ifs) == 0 {
		return errors.New("no network interfaces, not even lo")
	}
	return nil
}

func files() error {
	dir, err := os.MkdirTemp("", "goserver")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := os.WriteFile(a, []byte("data"), 0o600); err != nil {
		return err
	}
	if err := os.Rename(a, b); err != nil {
		return err
	}
	if err := os.Symlink(b, a); err != nil {
		return err
	}
	data, err := os.ReadFile(a)
	if err != nil {
		return err
	}
	if string(data) != "data" {
		return fmt.Errorf("read %q, want data", data)
	}
	if err := os.Chmod(b, 0o644); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(entries) != 2 {
		return fmt.Errorf("%d entries, want 2", len(entries))
	}
	if _, err := os.Executable(); err != nil {
		return err
	}
	return nil
}

func goroutines() error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(time.Millisecond)
			mu.Lock()
			total += i
			mu.Unlock()
		}()
	}
	wg.Wait()
	runtime.GC()
	if total != 199*200/2 {
		return fmt.Errorf("total %d", total)
	}
	return nil
}

func signals() error {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	defer signal.Stop(ch)
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		return err
	}
	select {
	case <-ch:
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("SIGUSR1 not delivered")
	}
}

func execChild() error {
	out, err := exec.Command("/bin/busybox", "echo", "child").Output()
	if err != nil {
		return err
	}
	if string(out) != "child\n" {
		return fmt.Errorf("child printed %q", out)
	}
	return nil
}

// denied checks a few calls the strict profile refuses, and how.
func denied() error {
	const sysClone3 = 435 // the same on amd64 and arm64
	for _, c := range []struct {
		name string
		err  error
		want syscall.Errno
	}{
		{"unshare(CLONE_NEWUSER)", syscall.Unshare(syscall.CLONE_NEWUSER), syscall.EPERM},
		{"mount", syscall.Mount("none", "/", "tmpfs", 0, ""), syscall.EPERM},
		{"clone3", rawErr(syscall.RawSyscall(sysClone3, 0, 0, 0)), syscall.ENOSYS},
		{"ptrace(PTRACE_TRACEME)", rawErr(syscall.RawSyscall(syscall.SYS_PTRACE, syscall.PTRACE_TRACEME, 0, 0)), syscall.EPERM},
		{"socket(AF_PACKET)", socketErr(syscall.AF_PACKET), syscall.EPERM},
		{"ioctl(TIOCSTI)", rawErr(syscall.Syscall(syscall.SYS_IOCTL, 0, syscall.TIOCSTI, uintptr(unsafe.Pointer(new(byte))))), syscall.EPERM},
	} {
		if !errors.Is(c.err, c.want) {
			return fmt.Errorf("%s: got %v, want %v", c.name, c.err, c.want)
		}
	}
	return nil
}

func rawErr(_, _ uintptr, errno syscall.Errno) error {
	if errno == 0 {
		return nil
	}
	return errno
}

func socketErr(family int) error {
	fd, err := syscall.Socket(family, syscall.SOCK_DGRAM, 0)
	if err == nil {
		syscall.Close(fd)
	}
	return err
}
