package rootless

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/network"
	"github.com/safe-run/safe-run/plan"
)

// Rootless bridge mode, a bridge of the service's own (a named bridge is
// shared_linux.go's): the inner safe-run lives in a network namespace N
// of its own, owned by the user's namespace, where it is root and makes
// the service's bridge, namespace, firewall, resolver and port forwarders
// as root does on the host. pasta (from passt) connects N to the host: it
// gives N a tap link with a copy of the host's address and routes, carries
// what leaves N out through ordinary sockets of the user's on the host,
// and forwards each published port from the host into N. It runs as the
// user, outside N, as a child of the outer safe-run, which ends it.
//
// Its options close what it would open by default: no port of N is
// forwarded to the host (-T none -U none), no host port but the declared
// ones into N (-t/-u), and N's gateway address is not mapped to the
// host's loopback (--no-map-gw), so the service reaches no loopback
// service of the host. IPv4 only, as the bridges are.

// pasta is a running pasta.
type pasta struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed by stop
	waited chan struct{} // closed once pasta is reaped
	once   sync.Once
	stderr *bytes.Buffer
}

// connect starts pasta on the network namespace of process pid, forwarding
// ports into it. The inner safe-run waits for the link pasta brings up
// before it connects the service (launcher's waitUplink); a pasta that
// fails says why there and here.
func connect(path string, pid int, ports []network.Port, log *slog.Logger) (*pasta, error) {
	args := []string{"--foreground", "--quiet", "--config-net", "--ipv4-only", "--no-map-gw"}
	_, forward := plan.RootlessPorts(ports)
	args = append(args, forward...)
	args = append(args, strconv.Itoa(pid))
	cmd := exec.Command(path, args...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	// SIGKILL when this safe-run dies, however: pasta would otherwise
	// keep N, and the ports, open. Its own process group: ^C on the
	// terminal is for the service, and this safe-run ends pasta last.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: unix.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting pasta to connect the service's network: %w (as root: apt-get install passt)", err)
	}
	p := &pasta{cmd: cmd, done: make(chan struct{}), waited: make(chan struct{}), stderr: &stderr}
	log.Debug("pasta connects the network namespace", "pid", cmd.Process.Pid, "args", strings.Join(args, " "))
	go func() {
		err := cmd.Wait()
		defer close(p.waited)
		select {
		case <-p.done:
		default:
			log.Warn("pasta ended: the service's network is cut off from the host", "err", err, "pasta", strings.TrimSpace(stderr.String()))
		}
	}()
	return p, nil
}

// portsFreeWait bounds how long a start waits for a published port that
// is in use to be free.
const portsFreeWait = 3 * time.Second

// portsFree returns once every published port can be bound (each is bound
// and let go, for pasta to bind), or with the first that cannot and why.
// Only a port in use is waited for, up to wait: the pasta of a safe-run
// that was SIGKILLed gets its SIGKILL (Pdeathsig) as that safe-run dies,
// but exits, closing the ports, on its own time, and a start at once
// after, as a restart is, found them still bound (the soak's SIGKILLed
// cycles, issue 19).
func portsFree(ports []network.Port, wait time.Duration) (network.Port, error) {
	deadline := time.Now().Add(wait)
	for _, p := range ports {
		for {
			f, err := network.ListenPort(context.Background(), p)
			if err == nil {
				f.Close()
				break
			}
			if !errors.Is(err, unix.EADDRINUSE) || time.Now().After(deadline) {
				return p, err
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return network.Port{}, nil
}

// stop ends pasta, once the inner safe-run is gone.
func (p *pasta) stop() {
	p.once.Do(func() {
		close(p.done)
		_ = p.cmd.Process.Signal(unix.SIGKILL)
		<-p.waited
	})
}
