package main

import (
	"strings"
	"testing"

	"github.com/safe-run/safe-run/internal/testenv"
)

// TestNoHeavyDeps keeps Kubernetes' packages out of the binary:
// libcontainer re-executes safe-run-tools for every container start of
// profile record, so every package it links is initialised again each
// time (k8s.io/api/core and apps alone cost about 2 ms and 9 MB there).
// package export writes the Kubernetes objects through local types; only
// its tests use k8s.io.
func TestNoHeavyDeps(t *testing.T) {
	var bad []string
	for _, pkg := range testenv.LinkedPackages(t) {
		if strings.HasPrefix(pkg, "k8s.io/") || strings.Contains(pkg, ".k8s.io/") {
			bad = append(bad, pkg)
		}
	}
	if len(bad) > 0 {
		t.Errorf("cmd/safe-run-tools links Kubernetes packages (keep them in tests):\n%s", strings.Join(bad, "\n"))
	}
}
