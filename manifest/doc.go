// Package manifest is the first stage of safe-run: it reads a service
// manifest (TOML, version 1), fills in the secure defaults and validates every
// key, so that later stages only ever see a complete, consistent Service.
//
// Errors name the file, the line and the key path, and say how to fix the
// input:
//
//	web.toml:14: resources.memory: "12X" is not a size (use e.g. 512M)
//
// All errors of a file are reported at once, sorted by line.
//
// The package is pure: no system calls beyond reading the manifest file, no
// container runtime, any GOOS. Facts about the host (does a bind source
// exist, is it a symlink to a socket) are checked again by the launcher at
// the moment it acts.
package manifest
