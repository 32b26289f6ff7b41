// Package launcher is the last stage of safe-run. Run executes an OCI
// runtime spec (built by package plan, the hinge `safe-run spec` prints)
// with libcontainer: it presents the image read-only and id-mapped, pins
// bind sources against symlink races, fills the secrets tmpfs, places the
// container in a cgroup nested under safe-run's own, supervises it in the
// foreground (signals, stop timeout, exit status, OOM, sd_notify) and
// removes everything it made on every exit path.
//
// It also owns the host facts a spec depends on (Host: state directories,
// user namespace ranges, cgroup placement, rootless) and the Job that
// safe-run-tools hands to safe-run when it prepared a service itself.
package launcher
