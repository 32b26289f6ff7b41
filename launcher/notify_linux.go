package launcher

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
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
// one (not under systemd) it does nothing. The sending half is
// go-systemd's (a datagram per message, abstract sockets included); the
// relay of what the service says, and what it may say, stays here.
type notifier struct {
	enabled  bool          // NOTIFY_SOCKET is set
	watchdog time.Duration // WatchdogSec of the unit, 0 if none (or not for this pid)
	relay    *net.UnixConn // the service's socket, with notify = true
	ready    func()        // called on the service's first READY=1; nil: none
}

func newNotifier() *notifier {
	n := &notifier{enabled: os.Getenv("NOTIFY_SOCKET") != ""}
	if n.enabled {
		// A WATCHDOG_USEC that does not parse is systemd's to fix; without
		// a watchdog, safe-run sends no pings.
		n.watchdog, _ = daemon.SdWatchdogEnabled(false)
	}
	return n
}

// send tells systemd state. A lost notification is not the service's
// failure: systemd times the unit out, and says so in its own log.
func (n *notifier) send(state string) {
	if n.enabled {
		_, _ = daemon.SdNotify(false, state)
	}
}

// listen opens the service's notify socket in dir, owned by the process
// user as mapped, and relays what it may say until the socket is closed.
func (n *notifier) listen(dir string, uid, gid int) error {
	if err := os.Mkdir(dir, 0o711); err != nil {
		return err
	}
	path := filepath.Join(dir, notifySocket)
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
				if n.ready != nil && slices.Contains(strings.Split(msg, "\n"), "READY=1") {
					n.ready()
					n.ready = nil
				}
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
}

// notifySocket is the notify socket's name in plan.Placement.NotifyHostDir.
const notifySocket = "notify.sock"
