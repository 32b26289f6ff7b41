// Package plan runs every stage before the launcher on a manifest: load
// and validate it (manifest), enforce the policy (policy), resolve the image
// (image), choose the seccomp, AppArmor and Landlock confinement (profiles,
// apparmor, landlock), and build the one OCI runtime spec they add up to
// (Spec): a Job, the value the launcher runs.
//
// It is pure in what it decides: the host comes in as a host.Facts value
// (package host probes it, once per process), and Build changes nothing
// on the host but the image cache. What the host cannot give is recorded
// in the Job (Job.Refused), not enforced: spec, export and check plan on
// any host, and launcher.Enforce refuses before a start. The one write
// besides the cache is RecordIDs, the user namespace range's record,
// which launcher.Enforce calls.
//
// Both binaries use it: safe-run, which runs what it prepares in the same
// process, passes no registry client (Options.Registry), so that nothing
// of it is linked into what libcontainer re-executes as every container's
// init; safe-run-tools passes one, pulls, and hands the prepared service
// to safe-run (see cmd/safe-run).
package plan
