package policy

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/safe-run/safe-run/internal/printable"
	"github.com/safe-run/safe-run/manifest"
)

// WriteText writes the reports for a person: per target its open findings
// with their fixes, the risks [insecure] accepts with its reason, and the
// score with one line per deduction. failures are the gate's verdict.
// What the targets say (a container's env names and bind sources, a
// manifest's path) is printed with its control characters escaped: an ESC
// or a newline in it must not rewrite the terminal or forge a line such as
// "score 100/100".
func WriteText(w io.Writer, reports []*Report, failures []string) error {
	var b strings.Builder
	put := func(indent, format string, args ...any) {
		b.WriteString(indent)
		b.WriteString(printable.String(fmt.Sprintf(format, args...)))
		b.WriteString("\n")
	}
	for i, r := range reports {
		if i > 0 {
			b.WriteString("\n")
		}
		if r.Err != nil {
			put("", "%s: not judged: %v", r.title(), r.Err)
			continue
		}
		score, ds := r.Score()
		put("", "%s: score %d/100", r.title(), score)
		open := r.Open()
		if len(open) == 0 {
			put("  ", "no findings")
		} else {
			put("  ", "findings:")
			for _, f := range open {
				put("    ", "%s", f.line(r))
				fix := r.fix(f)
				if r.Kind == KindManifest && f.Refused() && f.Rule.Allow != "" {
					fix += fmt.Sprintf("; or acknowledge it: [insecure] allow = [%q] with a reason", f.Rule.Allow)
				}
				put("      ", "fix: %s", fix)
			}
		}
		if len(r.Allow) > 0 {
			put("  ", "accepted risks ([insecure] reason: %q):", r.Reason)
			acc := r.Accepted()
			for _, item := range r.Allow {
				n := 0
				for _, f := range acc {
					if f.Rule.Allow == item {
						put("    ", "%s: %s", item, f.line(r))
						n++
					}
				}
				if n == 0 {
					put("    ", "%s: %s", item, unusedAllow(item))
				}
			}
		}
		if len(ds) > 0 {
			put("  ", "deductions from 100:")
			for _, d := range ds {
				put("    ", "%s", d)
			}
		}
	}
	if len(failures) > 0 {
		b.WriteString("\nFAIL\n")
		for _, f := range failures {
			put("  ", "%s", f)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fix is the finding's fix in the terms of the target: manifest keys, or
// docker run flags.
func (r *Report) fix(f Finding) string {
	if f.Fix != "" {
		return f.Fix
	}
	if r.Kind != KindManifest && f.Rule.FixDocker != "" {
		return f.Rule.FixDocker
	}
	return f.Rule.Fix
}

// unusedAllow says why an [insecure] item has no finding to accept.
func unusedAllow(item string) string {
	switch item {
	case manifest.AllowInsecureRegistry, manifest.AllowSetuidBinaries:
		return "applies when the image is pulled and unpacked"
	case manifest.AllowNoResourceLimits:
		return "no finding needs it (with --host: none on this host either)"
	}
	return "no finding needs it (remove it)"
}

func (r *Report) title() string {
	t := r.Kind + " " + r.Name
	if r.Kind == KindManifest {
		t = r.Name
	}
	if r.Detail != "" {
		t += " (" + r.Detail + ")"
	}
	return t
}

// line renders a finding on one line: location, severity, rule, message.
func (f Finding) line(r *Report) string {
	loc := ""
	if r.File != "" {
		loc = r.File + ": "
		if f.Line > 0 {
			loc = fmt.Sprintf("%s:%d: ", r.File, f.Line)
		}
	}
	refused := ""
	if r.Kind == KindManifest && f.Refused() {
		refused = " (refused: safe-run will not run it)"
	}
	return fmt.Sprintf("%s%s %s %s: %s%s%s", loc, f.Rule.Severity, f.Rule.ID, f.Rule.Name, f.where(), f.Msg, refused)
}

type jsonReport struct {
	Targets  []jsonTarget `json:"targets"`
	Passed   bool         `json:"passed"`
	Failures []string     `json:"failures"`
}

type jsonTarget struct {
	Kind       string          `json:"kind"`
	Name       string          `json:"name"`
	Detail     string          `json:"detail,omitempty"`
	Error      string          `json:"error,omitempty"` // not judged: why; no score then
	Score      *int            `json:"score,omitempty"`
	Findings   []jsonFinding   `json:"findings"`
	Accepted   *jsonAccepted   `json:"accepted_risks,omitempty"`
	Deductions []jsonDeduction `json:"deductions"`
}

type jsonFinding struct {
	Rule     string `json:"rule"`
	Name     string `json:"name"`
	Severity string `json:"severity"`
	Title    string `json:"title"`
	Path     string `json:"path,omitempty"`
	Line     int    `json:"line,omitempty"`
	Message  string `json:"message"`
	Fix      string `json:"fix"`
	Allow    string `json:"allow,omitempty"`
	Accepted bool   `json:"accepted"`
	Refused  bool   `json:"refused"`
}

type jsonAccepted struct {
	Reason string   `json:"reason"`
	Allow  []string `json:"allow"`
}

type jsonDeduction struct {
	Rule     string `json:"rule"`
	Points   int    `json:"points"`
	Count    int    `json:"count"`
	Accepted bool   `json:"accepted"`
	Why      string `json:"why"`
}

// WriteJSON writes the reports as one JSON document, for scripts.
func WriteJSON(w io.Writer, reports []*Report, failures []string) error {
	out := jsonReport{Targets: []jsonTarget{}, Passed: len(failures) == 0, Failures: slices.Clip(failures)}
	if out.Failures == nil {
		out.Failures = []string{}
	}
	for _, r := range reports {
		t := jsonTarget{Kind: r.Kind, Name: r.Name, Detail: r.Detail, Findings: []jsonFinding{}, Deductions: []jsonDeduction{}}
		if r.Err != nil {
			t.Error = r.Err.Error()
			out.Targets = append(out.Targets, t)
			continue
		}
		score, ds := r.Score()
		t.Score = &score
		for _, f := range r.Findings {
			t.Findings = append(t.Findings, jsonFinding{
				Rule: f.Rule.ID, Name: f.Rule.Name, Severity: f.Rule.Severity.String(), Title: f.Rule.Title,
				Path: f.Path, Line: f.Line, Message: f.Msg, Fix: r.fix(f), Allow: f.Rule.Allow,
				Accepted: f.Accepted, Refused: r.Kind == KindManifest && f.Refused(),
			})
		}
		if len(r.Allow) > 0 {
			t.Accepted = &jsonAccepted{Reason: r.Reason, Allow: r.Allow}
		}
		for _, d := range ds {
			why := d.Why
			if d.Count > 1 {
				why += fmt.Sprintf(" (and %d more)", d.Count-1)
			}
			t.Deductions = append(t.Deductions, jsonDeduction{Rule: d.Rule.ID, Points: d.Points, Count: d.Count, Accepted: d.Accepted, Why: why})
		}
		out.Targets = append(out.Targets, t)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
