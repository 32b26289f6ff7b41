// Package plan runs every stage before the launcher on a manifest: load
// and validate it (manifest), enforce the policy (policy), resolve the image
// (image), choose the seccomp and AppArmor profiles (profiles, apparmor),
// and build the one OCI runtime spec they add up to (Spec), with the host
// facts the launcher provides.
//
// Both binaries use it: safe-run, which runs what it prepares in the same
// process, passes no registry client (Options.Registry), so that nothing
// of it is linked into what libcontainer re-executes as every container's
// init; safe-run-tools passes one, pulls, and hands the prepared service
// to safe-run (see cmd/safe-run).
package plan
