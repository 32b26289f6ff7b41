// Package profiles turns the manifest's seccomp choice into the OCI seccomp
// section of the container's runtime spec, shows what the filter denies
// while the container runs, and records profiles from a service's calls.
//
// In safe-run's data flow it comes after image.Resolve and before
// plan.Spec: [Seccomp] takes the profile name or path from the manifest,
// the capabilities the process will hold and the target architecture, and
// returns a [specs.LinuxSeccomp] with every condition already resolved, so
// the spec shows exactly which system calls the service may make.
//
// The built-in profiles are "default", equivalent to Docker's default profile
// (the test compares the two call by call), and "strict", a much smaller
// allowlist for static servers and shell scripts. A custom profile is a file
// in Docker's JSON format, the one `docker run --security-opt seccomp=FILE`
// reads; [WriteDockerJSON] writes that format back out.
//
// Generating a profile needs no root, no libseccomp and no kernel support:
// the host facts it depends on (architecture, kernel version) are passed in.
//
// While the container runs, the launcher calls [WatchViolations], which
// reports each denied call on safe-run's stderr (see violations.go): as
// root from the kernel's audit records, rootless from seccomp
// notifications that [NotifyDenials] adds to the filter. A [Recording]
// gives the profile to run a service under while its calls are recorded,
// collects them, and returns the recorded profile; [Diff] compares two
// profiles call by call. Those parts read what the kernel reports, so they
// need Linux and libseccomp to name the calls; running the container is
// launcher.Record's.
package profiles
