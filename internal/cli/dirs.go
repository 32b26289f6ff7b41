package cli

import (
	"os"
	"path/filepath"

	"github.com/safe-run/safe-run/plan"
)

// DefaultDirs returns the directories for the current user;
// SAFE_RUN_STATE_DIR and SAFE_RUN_DATA_DIR override them (tests, and
// several independent instances on one host).
func DefaultDirs() plan.Dirs {
	d := plan.Dirs{State: "/run/safe-run", Data: "/var/lib/safe-run"}
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
