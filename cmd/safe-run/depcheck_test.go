package main

import (
	"strings"
	"testing"

	"github.com/safe-run/safe-run/internal/testenv"
)

// TestLean keeps safe-run to running services: it is every container's
// init (libcontainer re-executes it, initialising every package it links
// each time) and stays resident for the service's life. Pulling from
// registries, the command line's other commands, exports and audit belong
// to safe-run-tools. crypto/tls is linked, never used: the bridge's
// resolver (miekg/dns), which must live in the supervisor, imports it for
// DNS over TLS.
func TestLean(t *testing.T) {
	forbidden := []string{
		"github.com/safe-run/safe-run/image/registry", "github.com/safe-run/safe-run/export",
		"github.com/safe-run/safe-run/audit", "github.com/safe-run/safe-run/importer",
		"github.com/safe-run/safe-run/doctor", "github.com/spf13/cobra",
		"github.com/google/go-containerregistry/pkg/v1/remote", "net/http", "k8s.io/",
		"github.com/prometheus/", "github.com/safe-run/safe-run/ops/metrics",
	}
	var bad []string
	for _, pkg := range testenv.LinkedPackages(t) {
		for _, f := range forbidden {
			if pkg == f || strings.HasPrefix(pkg, f+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(pkg, f)) {
				bad = append(bad, pkg)
			}
		}
	}
	if len(bad) > 0 {
		t.Errorf("cmd/safe-run links what only safe-run-tools needs:\n%s", strings.Join(bad, "\n"))
	}
}
