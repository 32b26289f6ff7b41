// Package launcher is the last stage of safe-run. Spec turns the validated
// manifest, the resolved image and the chosen profiles into one OCI runtime
// spec: the hinge that `safe-run spec` prints and tests pin as golden files.
// Run executes a spec with libcontainer: it presents the image read-only and
// id-mapped, pins bind sources against symlink races, fills the secrets
// tmpfs, places the container in a cgroup nested under safe-run's own,
// supervises it in the foreground (signals, stop timeout, exit status, OOM)
// and removes everything it made on every exit path.
package launcher
