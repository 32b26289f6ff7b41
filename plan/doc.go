// Package plan runs every stage before the launcher on a manifest: load
// and validate it (manifest), enforce the policy (policy), resolve the image
// (image), choose the seccomp and AppArmor profiles (profiles, apparmor),
// and build the one OCI runtime spec they add up to (Spec), with the host
// facts the launcher provides.
//
// It is apart from package launcher so that what runs containers stays
// small: libcontainer re-executes the running binary as every container's
// init, and the supervisor stays resident for the service's life; the
// image stage's registry client and the rest of the command line need not
// be part of either (see cmd/safe-run-supervisor).
package plan
