package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/safe-run/safe-run/internal/printable"
	"github.com/safe-run/safe-run/policy"
)

// exitFindings is check's and audit's status when the gate fails, as
// linters use 1; safe-run's own failures stay 125.
const exitFindings = 1

// reportFlags are the output and gate flags check and audit share.
type reportFlags struct {
	format   string
	minScore int
	failOn   string
}

func (f *reportFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.format, "format", "text", "output format: text, json or sarif (SARIF 2.1.0, for GitHub code scanning)")
	cmd.Flags().IntVar(&f.minScore, "min-score", 0, "fail (exit 1) when a target scores below `N` (0-100)")
	cmd.Flags().StringVar(&f.failOn, "fail-on", "high", "fail (exit 1) on an open finding of this `severity` or worse: info, low, medium, high, critical, or none")
}

func (f *reportFlags) gate() (policy.Gate, error) {
	g := policy.Gate{MinScore: f.minScore}
	if f.minScore < 0 || f.minScore > 100 {
		return g, fmt.Errorf("--min-score %d: use a score from 0 to 100", f.minScore)
	}
	if strings.EqualFold(f.failOn, "none") {
		g.Never = true
		return g, nil
	}
	sev, err := policy.ParseSeverity(f.failOn)
	if err != nil {
		return g, fmt.Errorf("--fail-on: %w", err)
	}
	g.FailOn = sev
	return g, nil
}

// writeReports prints the reports in the chosen format and turns the
// gate's verdict into the exit status.
func writeReports(g *globals, f *reportFlags, reports []*policy.Report) error {
	gate, err := f.gate()
	if err != nil {
		return err
	}
	// What was not judged is reported on standard error, by whoever
	// could not judge it; JSON and SARIF carry it too, to stay one
	// document that names every target.
	judged := slices.DeleteFunc(slices.Clone(reports), func(r *policy.Report) bool { return r.Err != nil })
	if f.format == "text" {
		if len(judged) == 0 {
			return nil
		}
		reports = judged
	}
	failures := gate.Failures(reports)
	switch f.format {
	case "text":
		err = policy.WriteText(g.stdout, reports, failures)
	case "json":
		err = policy.WriteJSON(g.stdout, reports, failures)
	case "sarif":
		err = policy.WriteSARIF(g.stdout, reports, buildVersion())
	default:
		return fmt.Errorf("--format %q: use text, json or sarif", f.format)
	}
	if err != nil {
		return err
	}
	if len(failures) > 0 {
		if f.format != "text" {
			for _, l := range gate.Failures(judged) {
				fmt.Fprintln(g.stderr, "FAIL:", printable.String(l))
			}
		}
		return exitStatus(exitFindings)
	}
	return nil
}
