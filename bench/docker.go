package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dockerTrial starts a private dockerd (its own socket, data-root and
// exec-root under the bench's directory, no iptables, no bridge), imports
// example/rootfs as an image, and times `docker run --rm` with the same
// limits and hardening flags. The daemon is stopped and its files removed
// when the bench ends.
func dockerTrial(ctx context.Context, e *env) (*trial, error) {
	dockerd, err := lookPath("dockerd")
	if err != nil {
		return nil, err
	}
	docker, err := lookPath("docker")
	if err != nil {
		return nil, err
	}
	dir, err := e.dir("docker")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "docker.sock")
	host := "unix://" + sock
	// dockerd 20.10 writes a trust key to /etc/docker/key.json unless told
	// otherwise.
	config := filepath.Join(dir, "daemon.json")
	if err := writeJSON(config, map[string]string{"deprecated-key-path": filepath.Join(dir, "key.json")}); err != nil {
		return nil, err
	}
	args := []string{"--config-file", config, "--host", host,
		"--data-root", filepath.Join(dir, "data"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "docker.pid"),
		"--iptables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none",
		"--userland-proxy=false", "--log-level=warn"}
	userns := subIDs("safe-run")
	if userns {
		args = append(args, "--userns-remap=safe-run")
	}
	log, err := os.OpenFile(filepath.Join(dir, "dockerd.log"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644) // the bench's own directory; a second daemon starts afresh
	if err != nil {
		return nil, err
	}
	defer log.Close()
	// dockerd and its containerd leave these behind even with their own
	// roots: remove those that were not there before (when empty).
	var created []string
	for _, p := range []string{"/run/docker", "/run/docker/plugins", "/run/containerd", "/run/containerd/s"} {
		if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
			created = append(created, p)
		}
	}
	cmd := exec.Command(dockerd, args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group: ^C on the bench must not kill it before the
	// bench has stopped it cleanly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting dockerd: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	e.defer_(func() {
		e.logf("stopping dockerd")
		stopDaemon(cmd.Process, exited)
		killStrays(dir)
		removeAll(dir)
		for i := len(created) - 1; i >= 0; i-- {
			_ = os.Remove(created[i])
		}
	})
	d := func(args ...string) []string { return append([]string{docker, "-H", host}, args...) }
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := commandEnv(ctx, nil, d("version")...); err == nil {
			break
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("dockerd exited (see its log): %s", lastLine(filepath.Join(dir, "dockerd.log")))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return nil, errors.New("dockerd did not answer within 30s")
		}
	}
	tar := exec.CommandContext(ctx, "tar", "-C", e.rootfs, "-cf", "-", ".")
	pipe, err := tar.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := tar.Start(); err != nil {
		return nil, fmt.Errorf("tar of the rootfs: %w", err)
	}
	_, err = command(ctx, pipe, docker, "-H", host, "import", "-", "safe-run-bench:latest")
	if werr := tar.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("tar of the rootfs: %w", werr)
	}
	if err != nil {
		return nil, fmt.Errorf("docker import: %w", err)
	}
	note := fmt.Sprintf("dockerd %s, client %s; image imported from the same rootfs; "+
		"--network none --read-only --cap-drop ALL --security-opt no-new-privileges -m %s --cpus %s --pids-limit %d, "+
		"Docker's default seccomp profile",
		dockerVersion(ctx, docker, host, "{{.Server.Version}}"), dockerVersion(ctx, docker, host, "{{.Client.Version}}"),
		benchMemory, benchCPUs, benchPids)
	if userns {
		note += ", --userns-remap onto safe-run's subordinate ids"
	} else {
		note += "; no user namespace (no /etc/subuid entry for safe-run: run make setup-user)"
	}
	mem := strings.ToLower(benchMemory)
	return &trial{
		run: timedRun(nil, d("run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL",
			"--security-opt", "no-new-privileges", "-m", mem, "--memory-swap", mem,
			"--cpus", benchCPUs, "--pids-limit", strconv.Itoa(benchPids),
			"safe-run-bench:latest", "/bin/true")...),
		note: note,
	}, nil
}

func dockerVersion(ctx context.Context, docker, host, format string) string {
	out, err := command(ctx, nil, docker, "-H", host, "version", "--format", format)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// subIDs says whether user has subordinate id ranges in /etc/subuid.
func subIDs(user string) bool {
	data, err := os.ReadFile("/etc/subuid")
	if err != nil {
		return false
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, user+":") {
			return true
		}
	}
	return false
}

// stopDaemon asks a daemon to stop, and kills it after 20 seconds.
func stopDaemon(p *os.Process, exited <-chan struct{}) {
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		_ = p.Kill()
		<-exited
	}
}

// killStrays kills what dockerd started and left running (its containerd
// and shims, when dockerd had to be killed): every process whose command
// line names the bench's docker directory.
func killStrays(dir string) {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err == nil && strings.Contains(string(cmdline), dir+"/") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

func lastLine(path string) string {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			last = t
		}
	}
	return last
}
