// Package policy is the second stage of safe-run: it judges what a valid
// manifest asks for against the security advice safe-run encodes (design.md,
// "Secure defaults"). Every rule has a stable ID. A rule that names an
// [insecure] allow item refuses the manifest unless that item is listed;
// the others only warn.
//
// Like package manifest, policy is pure: it judges what the manifest says.
// The launcher checks the host again when it acts (a bind source is resolved
// through its symlinks and checked with SensitivePath once more).
package policy
