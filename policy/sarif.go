package policy

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// SARIF 2.1.0 (OASIS), the subset GitHub code scanning reads:
// https://docs.oasis-open.org/sarif/sarif/v2.1.0/sarif-v2.1.0.html
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool        sarifTool         `json:"tool"`
	Invocations []sarifInvocation `json:"invocations,omitempty"`
	Results     []sarifResult     `json:"results"`
}

// sarifInvocation says what was not judged: a target that could not be
// read or reached is a tool execution notification, and the run did not
// succeed.
type sarifInvocation struct {
	ExecutionSuccessful        bool                `json:"executionSuccessful"`
	ToolExecutionNotifications []sarifNotification `json:"toolExecutionNotifications"`
}

type sarifNotification struct {
	Level     string          `json:"level"`
	Message   sarifText       `json:"message"`
	Locations []sarifLocation `json:"locations,omitempty"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri"`
	Version        string      `json:"version,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifRule struct {
	ID                   string          `json:"id"`
	Name                 string          `json:"name"`
	ShortDescription     sarifText       `json:"shortDescription"`
	FullDescription      sarifText       `json:"fullDescription"`
	Help                 sarifHelp       `json:"help"`
	DefaultConfiguration sarifConfig     `json:"defaultConfiguration"`
	Properties           sarifProperties `json:"properties"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifHelp struct {
	Text     string `json:"text"`
	Markdown string `json:"markdown"`
}

type sarifConfig struct {
	Level string `json:"level"`
}

type sarifProperties struct {
	// GitHub ranks alerts by security-severity: 9.0 and above critical,
	// 7.0 high, 4.0 medium, above 0 low.
	SecuritySeverity string   `json:"security-severity,omitempty"`
	Precision        string   `json:"precision"`
	Tags             []string `json:"tags"`
}

type sarifResult struct {
	RuleID       string             `json:"ruleId"`
	RuleIndex    int                `json:"ruleIndex"`
	Level        string             `json:"level"`
	Message      sarifText          `json:"message"`
	Locations    []sarifLocation    `json:"locations"`
	Suppressions []sarifSuppression `json:"suppressions,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation *sarifPhysical `json:"physicalLocation,omitempty"`
	LogicalLocations []sarifLogical `json:"logicalLocations,omitempty"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           *sarifRegion  `json:"region,omitempty"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine int `json:"startLine"`
}

type sarifLogical struct {
	Name               string `json:"name"`
	FullyQualifiedName string `json:"fullyQualifiedName"`
	Kind               string `json:"kind"`
}

type sarifSuppression struct {
	Kind          string `json:"kind"`
	Justification string `json:"justification"`
}

var sarifLevel = map[Severity]string{Critical: "error", High: "error", Medium: "warning", Low: "note", Info: "note"}

var securitySeverity = map[Severity]string{Critical: "9.5", High: "8.0", Medium: "5.5", Low: "3.0"}

// WriteSARIF writes the reports as one SARIF 2.1.0 run for GitHub code
// scanning (github/codeql-action/upload-sarif). Manifest findings point at
// the file and line; container and daemon findings, which have no file,
// carry a logical location. Findings acknowledged in [insecure] are
// results with an in-source suppression whose justification is the reason.
func WriteSARIF(w io.Writer, reports []*Report, version string) error {
	run := sarifRun{
		Tool: sarifTool{Driver: sarifDriver{
			Name: "safe-run", InformationURI: "https://github.com/safe-run/safe-run", Version: version,
		}},
		Results: []sarifResult{},
	}
	index := map[*Rule]int{}
	for i, r := range rules {
		index[r] = i
		run.Tool.Driver.Rules = append(run.Tool.Driver.Rules, sarifRuleOf(r))
	}
	for _, rep := range reports {
		if rep.Err != nil {
			if run.Invocations == nil {
				run.Invocations = []sarifInvocation{{ToolExecutionNotifications: []sarifNotification{}}}
			}
			n := sarifNotification{Level: "error", Message: sarifText{Text: fmt.Sprintf("%s: not judged: %v", rep.Name, rep.Err)}}
			if rep.Kind == KindManifest {
				n.Locations = []sarifLocation{{PhysicalLocation: &sarifPhysical{ArtifactLocation: sarifArtifact{URI: filepath.ToSlash(rep.Name)}}}}
			} else {
				n.Locations = []sarifLocation{{LogicalLocations: []sarifLogical{{Name: rep.Name, FullyQualifiedName: rep.Kind + ":" + rep.Name, Kind: "resource"}}}}
			}
			run.Invocations[0].ToolExecutionNotifications = append(run.Invocations[0].ToolExecutionNotifications, n)
			continue
		}
		for _, f := range rep.Findings {
			res := sarifResult{
				RuleID: f.Rule.ID, RuleIndex: index[f.Rule], Level: sarifLevel[f.Rule.Severity],
				Message: sarifText{Text: fmt.Sprintf("%s%s (fix: %s)", f.where(), f.Msg, rep.fix(f))},
			}
			var loc sarifLocation
			if rep.File != "" {
				loc.PhysicalLocation = &sarifPhysical{ArtifactLocation: sarifArtifact{URI: filepath.ToSlash(rep.File)}}
				if f.Line > 0 {
					loc.PhysicalLocation.Region = &sarifRegion{StartLine: f.Line}
				}
			} else {
				loc.LogicalLocations = []sarifLogical{{
					Name: rep.Name, FullyQualifiedName: rep.Kind + ":" + rep.Name, Kind: "resource",
				}}
			}
			res.Locations = []sarifLocation{loc}
			if f.Accepted {
				res.Suppressions = []sarifSuppression{{Kind: "inSource", Justification: rep.Reason}}
			}
			run.Results = append(run.Results, res)
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs:    []sarifRun{run},
	})
}

func sarifRuleOf(r *Rule) sarifRule {
	var refs []string
	tags := []string{"security"}
	if r.CIS != "" {
		refs = append(refs, "CIS Docker Benchmark v1.6.0 "+r.CIS)
		tags = append(tags, "cis-docker-"+strings.ReplaceAll(r.CIS, ", ", ",cis-docker-"))
	}
	if r.PSS != "" {
		refs = append(refs, "Kubernetes Pod Security Standards, "+r.PSS)
	}
	help := "Fix: " + r.Fix
	md := "**Fix:** " + r.Fix
	if r.Allow != "" {
		help += fmt.Sprintf("\nIf the service really needs it: [insecure] allow = [%q], with a reason.", r.Allow)
		md += fmt.Sprintf("\n\nIf the service really needs it: `[insecure] allow = [%q]`, with a reason.", r.Allow)
	}
	if len(refs) > 0 {
		help += "\nSee: " + strings.Join(refs, "; ")
		md += "\n\nSee: " + strings.Join(refs, "; ")
	}
	return sarifRule{
		ID: r.ID, Name: r.Name,
		ShortDescription:     sarifText{Text: r.Title},
		FullDescription:      sarifText{Text: r.Advice},
		Help:                 sarifHelp{Text: help, Markdown: md},
		DefaultConfiguration: sarifConfig{Level: sarifLevel[r.Severity]},
		Properties: sarifProperties{
			SecuritySeverity: securitySeverity[r.Severity], Precision: "very-high",
			Tags: strings.Split(strings.Join(tags, ","), ","),
		},
	}
}
