// Package doctor checks what this host gives safe-run, for `safe-run
// doctor`: every piece a service needs to run with full hardening, root or
// rootless, each with what is wrong and the one command that fixes it.
//
// The checks read the host through Host, whose paths can be rooted in a
// fake tree, so that tests can produce every broken condition.
package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Status of one check.
type Status string

const (
	OK   Status = "ok"
	Warn Status = "warn" // a service still runs, with less hardening
	Fail Status = "fail" // a service cannot run (or not with the manifest's limits)
	Info Status = "info" // a fact worth knowing; changes nothing
)

// Check is one diagnosis.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Found  string `json:"found"`
	Fix    string `json:"fix,omitempty"`
}

// Report is the whole diagnosis.
type Report struct {
	Rootless bool    `json:"rootless"`
	User     string  `json:"user"`
	Checks   []Check `json:"checks"`
}

// Degraded reports whether a service could not run here with full
// hardening: the exit status of `safe-run doctor`.
func (r *Report) Degraded() bool {
	for _, c := range r.Checks {
		if c.Status == Warn || c.Status == Fail {
			return true
		}
	}
	return false
}

// WriteText writes the report as a table, a fix under each problem.
func (r *Report) WriteText(w io.Writer) error {
	mode := "as root"
	if r.Rootless {
		mode = "rootless, as " + r.User
	}
	fmt.Fprintf(w, "safe-run doctor (%s)\n\n", mode)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range r.Checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(string(c.Status)), c.Name, c.Found)
		if c.Fix != "" {
			fmt.Fprintf(tw, "\t\tfix: %s\n", c.Fix)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.Degraded() {
		_, err := fmt.Fprintln(w, "\nA service would not run here with full hardening: see the fixes above.")
		return err
	}
	_, err := fmt.Fprintln(w, "\nEverything a service needs is here.")
	return err
}

// WriteJSON writes the report for scripts.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
