package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// errNotInstalled marks a runtime the host lacks: its row says so and the
// bench goes on.
var errNotInstalled = errors.New("not installed")

// A table groups rows that are compared with each other. In a timed table
// every row is a trial, run interleaved with the others, and the first row
// is the baseline of the ratio column.
type table struct {
	title   string
	timed   bool
	columns []string // headers of the value columns of an untimed table
}

var (
	startTable = &table{
		title: "start-to-exit of /bin/true (same busybox rootfs, equivalent hardening)",
		timed: true,
	}
	memoryTable = &table{
		title:   "supervisor memory while the service sleeps",
		columns: []string{"VmRSS", "VmHWM", "RssAnon", "RssFile"},
	}
	unpackTable = &table{
		title:   "unpacking the example OCI image (example/oci:latest) onto tmpfs, median of 5",
		columns: []string{"time", "MiB/s"},
	}
	seccompTable = &table{
		title:   "seccomp filter cost per system call (getpid/read loop, profiles/integration BenchmarkSyscallLoop)",
		columns: []string{"ns/call", "over none", "over allow-all"},
	}
)

// A benchmark is one entry of the bench. A timed one prepares a trial (one
// start-to-exit, run many times by the harness); an untimed one measures
// and returns its rows itself.
type benchmark struct {
	table   *table
	name    string
	group   string // a name for -only to pick a set of rows by ("net")
	prepare func(ctx context.Context, e *env) (*trial, error)
	measure func(ctx context.Context, e *env) ([]row, error)
}

// A trial is one timed operation of a timed benchmark.
type trial struct {
	run  func(ctx context.Context) error
	note string // what makes this row differ from the baseline
}

// A row is one line of a table.
type row struct {
	name    string
	samples []time.Duration // timed tables
	values  []string        // untimed tables, one per column
	note    string
	failed  string // why the row has no measurement
}

// runTable runs the benchmarks of one table and returns its rows in order.
func runTable(ctx context.Context, e *env, t *table, list []benchmark) []row {
	var rows []row
	if !t.timed {
		for _, b := range list {
			got, err := b.measure(ctx, e)
			if err != nil {
				rows = append(rows, row{name: b.name, failed: failure(err)})
				continue
			}
			rows = append(rows, got...)
		}
		return rows
	}

	type live struct {
		row   int
		trial *trial
	}
	var trials []live
	for _, b := range list {
		e.logf("preparing %s", b.name)
		tr, err := b.prepare(ctx, e)
		if err == nil {
			err = warmUp(ctx, tr, e.warmup)
		}
		rows = append(rows, row{name: b.name})
		if err != nil {
			rows[len(rows)-1].failed = failure(err)
			continue
		}
		rows[len(rows)-1].note = tr.note
		trials = append(trials, live{len(rows) - 1, tr})
	}
	if len(trials) == 0 {
		return rows
	}
	// Interleaved rounds, each starting one trial further on: a burst of
	// load from elsewhere on the host then hits every runtime alike.
	e.logf("timing %d runtimes, %d runs each", len(trials), e.runs)
	for i := 0; i < e.runs && ctx.Err() == nil; i++ {
		for k := range trials {
			lv := trials[(i+k)%len(trials)]
			r := &rows[lv.row]
			if r.failed != "" {
				continue
			}
			// Let the previous run's teardown (cgroup removal, namespace
			// release) finish, so that no run starts in another's shadow.
			time.Sleep(e.settle)
			start := time.Now()
			err := lv.trial.run(ctx)
			d := time.Since(start)
			if err != nil {
				r.failed = failure(err)
				continue
			}
			r.samples = append(r.samples, d)
		}
	}
	return rows
}

func warmUp(ctx context.Context, t *trial, n int) error {
	for i := 0; i < n; i++ {
		if err := t.run(ctx); err != nil {
			return err
		}
	}
	return nil
}

func failure(err error) string {
	if errors.Is(err, errNotInstalled) {
		return err.Error()
	}
	s := strings.TrimSpace(err.Error())
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return "failed: " + s
}

// percentile is the nearest-rank percentile p (0..100) of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted)) + 0.999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// median of sorted samples, the mean of the middle two for an even count.
func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }

// printTable writes one table: medians, p10 and p90 and the ratio to the
// first row for a timed table; the rows' own values for another.
func printTable(w io.Writer, t *table, rows []row) {
	fmt.Fprintf(w, "\n%s\n", t.title)
	width := len("runtime")
	for _, r := range rows {
		width = max(width, len(r.name))
	}
	var tab [][]string
	if t.timed {
		tab = append(tab, []string{"", "median ms", "p10", "p90", "runs", "vs " + rows[0].name})
		var base time.Duration
		for i, r := range rows {
			if r.failed != "" {
				tab = append(tab, []string{r.name, r.failed})
				continue
			}
			s := append([]time.Duration(nil), r.samples...)
			sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
			m := median(s)
			if i == 0 {
				base = m
			}
			ratio := "-"
			if base > 0 {
				ratio = fmt.Sprintf("%.2fx", float64(m)/float64(base))
			}
			tab = append(tab, []string{r.name, ms(m), ms(percentile(s, 10)), ms(percentile(s, 90)),
				fmt.Sprint(len(s)), ratio})
		}
	} else {
		tab = append(tab, append([]string{""}, t.columns...))
		for _, r := range rows {
			if r.failed != "" {
				tab = append(tab, []string{r.name, r.failed})
				continue
			}
			tab = append(tab, append([]string{r.name}, r.values...))
		}
	}
	cols := 0
	for _, l := range tab {
		if len(l) > 2 {
			cols = max(cols, len(l))
		}
	}
	wid := make([]int, cols)
	for _, l := range tab {
		if len(l) <= 2 && len(l) < cols {
			continue // a failure spans the value columns
		}
		for i, c := range l {
			wid[i] = max(wid[i], len(c))
		}
	}
	wid[0] = width
	for _, l := range tab {
		var b strings.Builder
		for i, c := range l {
			if i == 0 {
				fmt.Fprintf(&b, "  %-*s", wid[0], c)
				continue
			}
			if len(l) == 2 && cols > 2 {
				fmt.Fprintf(&b, "  %s", c)
				continue
			}
			fmt.Fprintf(&b, "  %*s", wid[i], c)
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	var notes []string
	for _, r := range rows {
		if r.note != "" {
			notes = append(notes, fmt.Sprintf("  %s: %s", r.name, r.note))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintln(w, "  notes:")
		for _, n := range notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
}
