// Package audit judges a running Docker engine by safe-run's rules: every
// container's settings (policy.ContainerFindings) and the daemon's own
// exposure (policy.DaemonFindings): its socket's permissions and group, TCP
// listeners that answer without TLS client authentication, rootless mode
// and user-namespace remapping. It is how users who arrive with running
// Docker hosts see what safe-run would refuse, with the same rule IDs that
// `safe-run check` prints for manifests.
//
// It talks to the Engine API with net/http over the unix socket instead of
// github.com/moby/moby/client. The reason is no longer start-up cost (audit
// lives in safe-run-tools, which the lean safe-run binary does not link, see
// cmd/safe-run/depcheck_test.go) but size and surface: that client brings
// 54 more packages (OpenTelemetry, distribution/reference and their
// dependencies) for five GET endpoints of a stable, versioned API, whose
// fields audit reads into a few structs. client_test.go serves answers in
// the shape of API 1.41 and of the current API (testdata/api-*), so a
// field the decoding misses shows without a daemon.
package audit
