package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/printable"
)

// Formats of the commands' output.
const (
	FormatTable = "table"
	FormatText  = "text"
	FormatJSON  = "json"
)

// PSEntry is one line of `safe-run ps`.
type PSEntry struct {
	Status
	Crashed bool   `json:"crashed,omitempty"` // the supervisor died; what is left awaits its janitor or the next start
	Uptime  string `json:"uptime"`
}

// PS writes the running services under stateRoot; all adds those whose
// supervisor died and left its status behind.
func PS(w io.Writer, stateRoot, format string, all bool) error {
	list, err := List(stateRoot)
	var entries []PSEntry
	for _, s := range list {
		if s.Dead && !all {
			continue
		}
		entries = append(entries, PSEntry{Status: *s, Crashed: s.Dead, Uptime: time.Since(s.Started).Round(time.Second).String()})
	}
	switch format {
	case FormatJSON:
		if entries == nil {
			entries = []PSEntry{}
		}
		if jerr := writeJSON(w, entries); jerr != nil {
			return jerr
		}
	case FormatTable, "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tSTATE\tUPTIME\tPID\tIMAGE\tUSERNS\tLIMITS\tPORTS\tMANIFEST\tUNIT")
		for _, e := range entries {
			state := e.State
			if e.Crashed {
				state = "crashed (supervisor pid " + strconv.Itoa(e.SupervisorPID) + " died)"
			}
			img := e.Image
			if e.ImageDigest != "" {
				img += "@" + shortDigest(e.ImageDigest)
			}
			ports := strings.Join(e.Ports, ",")
			if e.Address != "" {
				ports = e.Address + " " + ports
			}
			// The image and manifest are named by whoever wrote them.
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, state, e.Uptime, e.InitPID, orDash(printable.String(img)), orDash(e.UserNS), limitsText(e.Limits), orDash(strings.TrimSpace(ports)), orDash(printable.String(e.Manifest)), orDash(printable.String(e.Unit)))
		}
		if ferr := tw.Flush(); ferr != nil {
			return ferr
		}
	default:
		return fmt.Errorf("--format %q: use table or json", format)
	}
	return err
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func limitsText(l Limits) string {
	var out []string
	if l.Memory > 0 {
		out = append(out, "mem "+bytesText(uint64(l.Memory)))
	}
	if l.CPUs > 0 {
		out = append(out, "cpus "+strconv.FormatFloat(l.CPUs, 'g', -1, 64))
	}
	if l.Pids > 0 {
		out = append(out, "pids "+strconv.FormatInt(l.Pids, 10))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + "B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func writeJSON(w io.Writer, v any) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

// Stop stops the named services through their supervisors, as SIGTERM to
// safe-run does (stop_signal, then SIGKILL after stop_timeout, or after
// timeout when it is not zero), and waits for each to be gone. All are
// stopped at once.
func Stop(ctx context.Context, stateRoot string, names []string, timeout time.Duration) error {
	return each(ctx, stateRoot, names, Request{Op: OpStop, Timeout: timeout})
}

// Kill sends sig to the named services through their supervisors, which
// forward it to the service (SIGKILL: kill it, and clean up).
func Kill(ctx context.Context, stateRoot string, names []string, sig unix.Signal) error {
	return each(ctx, stateRoot, names, Request{Op: OpKill, Signal: int(sig)})
}

func each(ctx context.Context, stateRoot string, names []string, req Request) error {
	list, err := Find(stateRoot, names)
	errs := make(chan error, len(list))
	for _, s := range list {
		go func() { errs <- Send(ctx, s, req) }()
	}
	all := []error{err}
	for range list {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}

// ParseSignal reads a signal as kill(1) takes it: HUP, SIGHUP, 1,
// RTMIN+2.
func ParseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %d is out of 1-64", n)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if rest, ok := strings.CutPrefix(name, "SIGRTMIN+"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 0 && 34+n <= 64 {
			return unix.Signal(34 + n), nil
		}
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("%q is not a signal (use a name such as HUP or SIGTERM, or a number)", s)
}

// EventsOptions are what `safe-run events` shows.
type EventsOptions struct {
	Names  []string
	Since  time.Time // zero: from the oldest kept
	Format string    // text | json
	Follow bool      // go on with new events until ctx ends
	// Warn gets a line for each damaged line of a journal (Damaged),
	// with the fix; nil: none.
	Warn io.Writer
}

// Events writes the events of the journals in dir (JournalDir).
func Events(ctx context.Context, w io.Writer, dir string, o EventsOptions) error {
	var emit func(Event)
	var werr error
	switch o.Format {
	case FormatText, "":
		emit = func(e Event) {
			msg := e.Message
			if e.Code != nil {
				msg = fmt.Sprintf("code %d: %s", *e.Code, msg)
			}
			// A message may quote what the service chose: its
			// processes' names, the paths it opened.
			_, werr = fmt.Fprintf(w, "%s %s %s %s\n", e.Time.Local().Format(time.RFC3339Nano), e.Service, e.Kind, printable.String(msg))
		}
	case FormatJSON:
		enc := json.NewEncoder(w)
		emit = func(e Event) { werr = enc.Encode(e) }
	default:
		return fmt.Errorf("--format %q: use text or json", o.Format)
	}
	if o.Follow {
		return FollowEvents(ctx, dir, o.Names, o.Since, func(e Event) {
			if werr == nil {
				emit(e)
			}
		})
	}
	// A name with no journal is a typo, or of another data directory:
	// printing nothing would say it has had no events.
	var unknown []string
	for _, n := range o.Names {
		if err := CheckName(n); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(dir, n+".jsonl")); errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Stat(filepath.Join(dir, n+".jsonl.1")); errors.Is(err, fs.ErrNotExist) {
				unknown = append(unknown, n)
			}
		}
	}
	if len(unknown) > 0 {
		return fmt.Errorf("no events of %s in %s: no service of that name has run with this data directory (safe-run ps lists the running ones; SAFE_RUN_DATA_DIR moves the directory)", strings.Join(unknown, ", "), dir)
	}
	evs, err := ReadEvents(dir, o.Names, o.Since)
	if err != nil {
		return err
	}
	if o.Warn != nil {
		damaged, _ := Damaged(dir, o.Names)
		for _, d := range damaged {
			fmt.Fprintf(o.Warn, "safe-run: events: %s (the other events are shown; to drop the damaged lines, remove the file once its service is stopped)\n", d)
		}
	}
	for _, e := range evs {
		if emit(e); werr != nil {
			return werr
		}
	}
	return nil
}

// StatsOptions are what `safe-run stats` shows.
type StatsOptions struct {
	Names    []string // none: every running service
	Format   string   // table | json
	Interval time.Duration
	Stream   bool // refresh every interval until ctx ends
	// Terminal: w is a terminal; a stream clears it and redraws each
	// reading in place, as docker stats does. Otherwise the readings
	// follow one another.
	Terminal bool
}

// clearScreen moves to the top left of the terminal and clears it.
const clearScreen = "\x1b[H\x1b[2J"

// ShowStats writes the numbers of the running services under stateRoot,
// each from two samples of its cgroup an interval apart. A stream of all
// services takes in those started since it began.
func ShowStats(ctx context.Context, w io.Writer, stateRoot string, o StatsOptions) error {
	if o.Format != FormatJSON && o.Format != FormatTable && o.Format != "" {
		return fmt.Errorf("--format %q: use table or json", o.Format)
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	list, err := statsList(stateRoot, o.Names)
	if len(list) == 0 && !(o.Stream && len(o.Names) == 0) {
		if err == nil && o.Format != FormatJSON {
			_, err = fmt.Fprintln(w, "no running services")
		} else if err == nil {
			err = writeJSON(w, []Stats{})
		}
		return err
	}
	errs := []error{err}
	// The previous sample of each service, by state directory: a
	// service started again under its name is another one.
	prev := map[string]Sample{}
	for _, s := range list {
		cur, err := SampleOf(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", s.Name, err))
			continue
		}
		prev[key(s)] = cur
	}
	if len(prev) == 0 && !(o.Stream && len(o.Names) == 0) {
		// Nothing to show: the errors alone, not a table without rows.
		return errors.Join(errs...)
	}
	t := time.NewTicker(o.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return errors.Join(errs...)
		case <-t.C:
		}
		if o.Stream && len(o.Names) == 0 {
			list, _ = statsList(stateRoot, nil)
		}
		var out []Stats
		next := map[string]Sample{}
		for _, s := range list {
			cur, err := SampleOf(s)
			if err != nil {
				continue // ended meanwhile, or said above
			}
			next[key(s)] = cur
			if p, ok := prev[key(s)]; ok {
				out = append(out, Compute(s.Name, p, cur, runtime.NumCPU()))
			}
		}
		prev = next
		if o.Stream && o.Terminal && o.Format != FormatJSON {
			if _, err := io.WriteString(w, clearScreen); err != nil {
				return err
			}
		}
		if err := writeStats(w, o.Format, out); err != nil {
			return err
		}
		if !o.Stream {
			return errors.Join(errs...)
		}
	}
}

// key tells apart two runs of a service of one name.
func key(s *Status) string {
	return s.StateDir + "\x00" + strconv.Itoa(s.SupervisorPID) + "\x00" + strconv.FormatUint(s.SupervisorStart, 10)
}

// statsList reads the named running services, or all of them.
func statsList(stateRoot string, names []string) ([]*Status, error) {
	if len(names) > 0 {
		return Find(stateRoot, names)
	}
	all, err := List(stateRoot)
	var list []*Status
	for _, s := range all {
		if !s.Dead && s.State != StateStarting {
			list = append(list, s)
		}
	}
	return list, err
}

func writeStats(w io.Writer, format string, out []Stats) error {
	switch format {
	case FormatJSON:
		if out == nil {
			out = []Stats{}
		}
		return writeJSON(w, out)
	case FormatTable, "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tCPU %\tCPU % OF LIMIT\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS\tTHROTTLED\tOOM KILLS")
		for _, s := range out {
			lim := "-"
			if s.CPULimitPercent != nil {
				lim = fmt.Sprintf("%.2f%% of %g", *s.CPULimitPercent, s.CPUs)
			}
			memLimit, pidsLimit := "-", "-"
			if s.MemoryLimit > 0 {
				memLimit = bytesText(s.MemoryLimit)
			}
			if s.PidsLimit > 0 {
				pidsLimit = strconv.FormatUint(s.PidsLimit, 10)
			}
			fmt.Fprintf(tw, "%s\t%.2f%%\t%s\t%s / %s\t%.2f%%\t%s / %s\t%s / %s\t%d / %s\t%.0f%% of periods, %.3fs\t%d\n", s.Name, s.CPUPercent, lim,
				bytesText(s.Memory), memLimit, s.MemoryPercent, bytesText(s.NetRx), bytesText(s.NetTx), bytesText(s.BlockRead), bytesText(s.BlockWrite),
				s.Pids, pidsLimit, s.ThrottledPercent, s.ThrottledSeconds, s.OOMKills)
		}
		return tw.Flush()
	}
	return fmt.Errorf("--format %q: use table or json", format)
}
