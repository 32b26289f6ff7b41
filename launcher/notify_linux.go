package launcher

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// safe-run speaks systemd's notify protocol (sd_notify(3)) when it runs as a
// Type=notify unit: it stays the unit's main process and reports the
// service's state for it. With [process] notify = true the service speaks
// the protocol itself, to a socket safe-run owns, and safe-run relays what
// the service may say.

// relayedNotifyKeys are what a service may tell systemd through safe-run.
// MAINPID and the file-descriptor store would name processes and files in
// namespaces systemd cannot see, or let the service act as the unit.
var relayedNotifyKeys = []string{"READY", "RELOADING", "STOPPING", "STATUS", "ERRNO", "BUSERROR", "WATCHDOG", "EXTEND_TIMEOUT_USEC", "MONOTONIC_USEC"}

// notifier sends safe-run's own notifications to $NOTIFY_SOCKET; without
// one (not under systemd) it does nothing.
type notifier struct {
	conn     *net.UnixConn
	watchdog time.Duration // WatchdogSec of the unit, 0 if none
	relay    *net.UnixConn // the service's socket, with notify = true
}

func newNotifier() *notifier {
	n := &notifier{}
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return n
	}
	if addr[0] == '@' {
		addr = "\x00" + addr[1:] // abstract namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		return n
	}
	n.conn = conn
	if usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64); err == nil && usec > 0 {
		if pid := os.Getenv("WATCHDOG_PID"); pid == "" || pid == strconv.Itoa(os.Getpid()) {
			n.watchdog = time.Duration(usec) * time.Microsecond
		}
	}
	return n
}

func (n *notifier) send(state string) {
	if n.conn != nil {
		_, _ = n.conn.Write([]byte(state))
	}
}

// listen opens the service's notify socket in dir, owned by the process
// user as mapped, and relays what it may say until the socket is closed.
func (n *notifier) listen(dir string, uid, gid int) error {
	if err := os.Mkdir(dir, 0o711); err != nil {
		return err
	}
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("creating the service's notify socket: %w", err)
	}
	if err := os.Lchown(path, uid, gid); err != nil {
		conn.Close()
		return err
	}
	n.relay = conn
	go func() {
		buf := make([]byte, 4096)
		for {
			m, err := conn.Read(buf)
			if err != nil {
				return
			}
			if msg := filterNotify(buf[:m]); msg != "" {
				n.send(msg)
			}
		}
	}()
	return nil
}

// filterNotify keeps the lines of a notification a service may relay.
func filterNotify(msg []byte) string {
	var keep []string
	for _, line := range bytes.Split(msg, []byte("\n")) {
		k, _, ok := strings.Cut(string(line), "=")
		if !ok {
			continue
		}
		for _, allowed := range relayedNotifyKeys {
			if k == allowed {
				keep = append(keep, string(line))
			}
		}
	}
	return strings.Join(keep, "\n")
}

// keepAlive pings the watchdog while the service runs, when safe-run (not
// the service) answers for it.
func (n *notifier) keepAlive(stop <-chan struct{}) {
	if n.watchdog == 0 || n.relay != nil {
		return
	}
	t := time.NewTicker(n.watchdog / 2)
	go func() {
		defer t.Stop()
		for {
			select {
			case <-t.C:
				n.send("WATCHDOG=1")
			case <-stop:
				return
			}
		}
	}()
}

func (n *notifier) close() {
	if n.relay != nil {
		n.relay.Close()
	}
	if n.conn != nil {
		n.conn.Close()
	}
}
