// Package launcher is the last stage of safe-run, the one that acts on the
// host. Enforce refuses a plan.Job this host cannot run and allocates its
// user namespace range; Run executes the job's OCI runtime spec (built by
// package plan, the hinge `safe-run spec` prints) with libcontainer: it
// presents the image read-only and id-mapped, pins bind sources against
// symlink races, fills the secrets tmpfs, places the container in a cgroup
// nested under safe-run's own, supervises it in the foreground (signals,
// stop timeout, exit status, OOM, sd_notify) and removes everything it made
// on every exit path. Record runs it while recording its system calls.
//
// The host's facts are package host's; the command line around a run
// (exit codes, the rootless re-exec, the hand-off from safe-run-tools) is
// in internal/cli, internal/rootless and internal/handoff.
package launcher
