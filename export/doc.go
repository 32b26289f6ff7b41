// Package export turns a prepared service into the same hardening on other
// engines: a systemd unit that runs safe-run itself, a `docker run` line, a
// compose service and a Kubernetes Pod or Deployment.
//
// It is the last stage: it takes what plan.Build decided (the validated
// manifest, the resolved image and the OCI spec) and writes text. Where a
// target cannot express a setting, the output says so in a comment, and
// Output.Warnings repeats what weakens the confinement.
//
// The Kubernetes objects are written through small local types with the
// field names of k8s.io/api: libcontainer re-executes safe-run-tools for
// every container start of profile record, so every package it links is
// initialised on each start, and k8s.io/api alone costs milliseconds and
// megabytes there (cmd/safe-run-tools/depcheck_test.go keeps it out). The
// tests decode the output strictly into the k8s.io/api types and check it with the Pod Security
// admission library.
package export
