package policy

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/safe-run/safe-run/manifest"
)

// Report is the judgement of one target: a manifest, a container or a
// docker daemon.
type Report struct {
	Kind     string // manifest | container | daemon
	Name     string // manifest path, container name, daemon endpoint
	Detail   string // container: short id and image; daemon: version
	File     string // manifest path, for locations; "" for the others
	Findings []Finding
	// Acknowledgements are the manifest's [insecure] allow items, with the
	// reason given for them.
	Reason string
	Allow  []string
	// Err is why the target could not be judged (a manifest that cannot
	// be read, an engine that cannot be reached): see Unjudged.
	Err error
}

// Unjudged is the report of a target that could not be judged. The JSON
// and SARIF formats carry it, so that their output stays one valid
// document that names every target; the gate fails on it.
func Unjudged(kind, name string, err error) *Report {
	return &Report{Kind: kind, Name: name, Err: err}
}

// Target kinds.
const (
	KindManifest  = "manifest"
	KindContainer = "container"
	KindDaemon    = "daemon"
)

// Check judges a manifest; host, when not nil, adds what this host cannot
// enforce.
func Check(s *manifest.Service, host *Host) *Report {
	fs := Findings(s)
	if host != nil {
		fs = append(fs, HostFindings(s, *host)...)
	}
	r := &Report{Kind: KindManifest, Name: s.File, File: s.File, Findings: fs,
		Reason: s.Insecure.Reason, Allow: s.Insecure.Allow}
	r.sort()
	return r
}

// Refuse adds to a manifest's report what a start refuses in the files
// the manifest names: err is what the start's own checks of them returned
// (launcher.CheckFiles, plan.SeccompProfile), FieldErrors at their keys.
// Each becomes a refused finding, of the rule that refused it where one
// did (a bind source that is /etc through a symlink: SR005), else of
// SR041; a key that already has a refused finding gets no second one.
func (r *Report) Refuse(s *manifest.Service, err error) {
	if err == nil {
		return
	}
	refused := map[string]bool{}
	for _, f := range r.Findings {
		if f.Refused() {
			refused[f.Path] = true
		}
	}
	var walk func(error)
	walk = func(err error) {
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		f := Finding{Rule: ruleUnusablePath, Msg: err.Error()}
		var fe *manifest.FieldError
		if errors.As(err, &fe) && fe.File == s.File {
			f.Path, f.Line, f.Msg = fe.Path, fe.Line, fe.Msg
		} else if fe != nil {
			// A problem inside another file (a custom seccomp
			// profile): its own position, in the message.
			f.Path, f.Line = "security.seccomp", s.Line("security.seccomp")
		}
		var re *RefusalError
		if errors.As(err, &re) {
			f.Rule, f.Msg = re.Rule, re.What
			f.Accepted = re.Rule.Allow != "" && s.Allows(re.Rule.Allow)
		}
		if refused[f.Path] && f.Path != "" {
			return
		}
		refused[f.Path] = true
		r.Findings = append(r.Findings, f)
	}
	walk(err)
	r.sort()
}

// CheckContainer judges a docker container.
func CheckContainer(c *Container, detail string) *Report {
	r := &Report{Kind: KindContainer, Name: c.Name, Detail: detail, Findings: ContainerFindings(c)}
	r.sort()
	return r
}

// CheckDaemon judges a docker daemon.
func CheckDaemon(d *Daemon) *Report {
	r := &Report{Kind: KindDaemon, Name: d.Endpoint, Detail: d.Version, Findings: DaemonFindings(d)}
	r.sort()
	return r
}

// sort orders findings by line, then severity (worst first), then rule.
func (r *Report) sort() {
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(b.Rule.Severity, a.Rule.Severity), cmp.Compare(a.Rule.ID, b.Rule.ID))
	})
}

// Open are the findings nobody acknowledged; Accepted the ones [insecure]
// acknowledges.
func (r *Report) Open() []Finding     { return r.filter(false) }
func (r *Report) Accepted() []Finding { return r.filter(true) }

func (r *Report) filter(accepted bool) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Accepted == accepted {
			out = append(out, f)
		}
	}
	return out
}

// points is what a rule of each severity deducts from 100.
var points = map[Severity]int{Critical: 30, High: 15, Medium: 8, Low: 3, Info: 0}

// Deduction is one line of a score's explanation.
type Deduction struct {
	Rule     *Rule
	Points   int
	Count    int  // findings of the rule
	Accepted bool // every one of them acknowledged in [insecure]
	Why      string
}

func (d Deduction) String() string {
	sev := d.Rule.Severity.String()
	if d.Accepted {
		sev += ", accepted"
	}
	why := d.Why
	if d.Count > 1 {
		why += fmt.Sprintf(" (and %d more)", d.Count-1)
	}
	return fmt.Sprintf("-%d %s %s (%s): %s", d.Points, d.Rule.ID, d.Rule.Name, sev, why)
}

// Score is 100 less, for every rule the target trips, the points of the
// rule's severity: once per rule, however many findings it has, so that
// the score says how many kinds of weakness there are and each line of the
// explanation stands for one fix. Accepted risks deduct as much as open
// ones: an acknowledgement records a decision, it does not remove the risk.
func (r *Report) Score() (int, []Deduction) {
	if r.Err != nil {
		return 0, nil // not judged is not a pass
	}
	var ds []Deduction
	idx := map[*Rule]int{}
	for _, f := range r.Findings {
		if i, ok := idx[f.Rule]; ok {
			ds[i].Count++
			ds[i].Accepted = ds[i].Accepted && f.Accepted
			continue
		}
		idx[f.Rule] = len(ds)
		ds = append(ds, Deduction{Rule: f.Rule, Points: points[f.Rule.Severity], Count: 1, Accepted: f.Accepted, Why: f.where() + f.Msg})
	}
	slices.SortStableFunc(ds, func(a, b Deduction) int {
		return cmp.Or(cmp.Compare(b.Points, a.Points), cmp.Compare(a.Rule.ID, b.Rule.ID))
	})
	score := 100
	var out []Deduction
	for _, d := range ds {
		if d.Points == 0 {
			continue
		}
		score -= d.Points
		out = append(out, d)
	}
	return max(score, 0), out
}

// where prefixes a message with its key path or flag.
func (f Finding) where() string {
	if f.Path == "" {
		return ""
	}
	return f.Path + ": "
}

// Gate is what makes a CI job fail.
type Gate struct {
	MinScore int      // fail below this score
	FailOn   Severity // fail on an open finding of this severity or worse
	Never    bool     // FailOn disabled (--fail-on none)
}

// ParseSeverity reads info, low, medium, high or critical.
func ParseSeverity(s string) (Severity, error) {
	for v := Info; v <= Critical; v++ {
		if strings.EqualFold(s, v.String()) {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%q is not a severity (use info, low, medium, high, critical, or none)", s)
}

// Failures says why the reports do not pass the gate, one line each; none
// when they pass. A finding safe-run would refuse to run (unacknowledged, or
// never allowed) fails a manifest whatever the gate says: `safe-run run`
// would not start it.
func (g Gate) Failures(reports []*Report) []string {
	var out []string
	for _, r := range reports {
		if r.Err != nil {
			out = append(out, fmt.Sprintf("%s: not judged: %v", r.Name, r.Err))
			continue
		}
		score, _ := r.Score()
		if score < g.MinScore {
			out = append(out, fmt.Sprintf("%s: score %d is below --min-score %d", r.Name, score, g.MinScore))
		}
		worst, n := Severity(-1), 0
		refused := 0
		for _, f := range r.Open() {
			if !g.Never && f.Rule.Severity >= g.FailOn {
				n++
				worst = max(worst, f.Rule.Severity)
			}
			if r.Kind == KindManifest && f.Refused() {
				refused++
			}
		}
		if n > 0 {
			out = append(out, fmt.Sprintf("%s: %d finding(s) at or above --fail-on %s (worst: %s)", r.Name, n, g.FailOn, worst))
		}
		if refused > 0 {
			out = append(out, fmt.Sprintf("%s: safe-run refuses to run it: %d finding(s) not acknowledged in [insecure]", r.Name, refused))
		}
	}
	return out
}
