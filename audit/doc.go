// Package audit judges a running Docker engine by safe-run's rules: every
// container's settings (policy.ContainerFindings) and the daemon's own
// exposure (policy.DaemonFindings): its socket's permissions and group, TCP
// listeners that answer without TLS client authentication, rootless mode
// and user-namespace remapping. It is how users who arrive with running
// Docker hosts see what safe-run would refuse, with the same rule IDs that
// `safe-run check` prints for manifests.
//
// It talks to the Engine API with net/http over the unix socket instead of
// github.com/moby/moby/client: that client links 54 more packages
// (OpenTelemetry, distribution/reference with its init-time regexps) into
// safe-run, and libcontainer re-executes the safe-run binary for every
// container start, so every package's init runs each time. Measured with
// GODEBUG=inittrace=1 on `safe-run version` (medians of 9 runs): package
// inits 3.6 ms and 652 KB with the client against 1.3 ms and 130 KB
// without it (1.5 ms and 188 KB with audit, import and check as written);
// hyperfine put `safe-run version` at 8.7 ms against 5.0 ms. audit needs
// five GET endpoints of a stable, versioned API; decoding the fields it
// reads is a few structs.
package audit
