package ops

import (
	"bytes"
	"os"
	"strconv"
	"strings"
)

// ProcessStart is when process pid started, in clock ticks after boot
// (field 22 of /proc/PID/stat): with the pid, it names one process, never
// another that reused the pid after it died.
func ProcessStart(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces
	// and parentheses: the fields after it start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, os.ErrInvalid
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0, os.ErrInvalid
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22: fields 3.. are f[0..]
}

// alive says whether the process pid that started at start still runs;
// a zombie does not.
func alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	if i := bytes.LastIndexByte(data, ')'); i >= 0 && bytes.HasPrefix(data[i+1:], []byte(" Z")) {
		return false
	}
	got, err := ProcessStart(pid)
	return err == nil && (start == 0 || got == start)
}
