// Package ops is what a running service publishes and what operators read
// of it, with no daemon: each supervisor (launcher.Run) writes a status
// file and serves a control socket in its state directory, and appends to
// a bounded journal of events; the commands of safe-run-tools (ps, stop,
// kill, exec, events, stats, and metrics through ops/metrics) read those,
// and the service's cgroup files and network namespace.
//
// It links only the standard library, golang.org/x/sys and
// internal/printable (no dependency of its own): the supervisor,
// which stays resident for the service's life, imports it.
package ops
