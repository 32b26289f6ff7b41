// Package proc names a process by its pid and its start time, so that a
// pid the kernel reused after its process died is never taken for it: the
// owner of a lease, a supervisor, the rootless keeper.
package proc

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// Start is when process pid started, in clock ticks after boot (field 22
// of /proc/PID/stat); 0 when it does not run: gone, or a zombie, which
// runs no more though its parent has yet to reap it.
func Start(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, field 2, is in parentheses and may hold spaces
	// and parentheses: the fields after it start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3, the state; f[19] field 22.
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// Alive says whether process pid runs and started at start (0: whenever).
func Alive(pid int, start uint64) bool {
	got := Start(pid)
	return got != 0 && (start == 0 || got == start)
}
