package launcher

import (
	"os"
	"path/filepath"
)

// Dirs are where safe-run keeps state (lost at reboot) and data (kept).
type Dirs struct {
	State string // /run/safe-run as root, $XDG_RUNTIME_DIR/safe-run rootless
	Data  string // /var/lib/safe-run as root, $XDG_DATA_HOME/safe-run rootless
}

// DefaultDirs returns the directories for the current user;
// SAFE_RUN_STATE_DIR and SAFE_RUN_DATA_DIR override them (tests, and
// several independent instances on one host).
func DefaultDirs() Dirs {
	d := Dirs{State: "/run/safe-run", Data: "/var/lib/safe-run"}
	if os.Geteuid() != 0 {
		if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" {
			d.State = filepath.Join(x, "safe-run")
		}
		data := os.Getenv("XDG_DATA_HOME")
		if data == "" {
			home, _ := os.UserHomeDir()
			data = filepath.Join(home, ".local", "share")
		}
		d.Data = filepath.Join(data, "safe-run")
	}
	if v := os.Getenv("SAFE_RUN_STATE_DIR"); v != "" {
		d.State = v
	}
	if v := os.Getenv("SAFE_RUN_DATA_DIR"); v != "" {
		d.Data = v
	}
	return d
}
