package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoHeavyDeps keeps Kubernetes' packages out of the binary:
// libcontainer re-executes safe-run-tools for every container start of
// profile record, so every package it links is initialised again each time (k8s.io/api/core and
// apps alone cost about 2 ms and 9 MB there). package export writes the
// Kubernetes objects through local types; only its tests use k8s.io.
func TestNoHeavyDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags", "seccomp", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	var bad []string
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "k8s.io/") || strings.Contains(pkg, ".k8s.io/") {
			bad = append(bad, pkg)
		}
	}
	if len(bad) > 0 {
		t.Errorf("cmd/safe-run-tools links Kubernetes packages (keep them in tests):\n%s", strings.Join(bad, "\n"))
	}
}
