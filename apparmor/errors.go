package apparmor

import "errors"

// Conditions callers branch on.
var (
	// ErrNotEnabled: the kernel has no AppArmor, or securityfs is not
	// mounted, and the manifest (or the command) needs it.
	ErrNotEnabled = errors.New("AppArmor is not enabled")
	// ErrNotLoaded: the manifest names a profile the kernel has not loaded.
	ErrNotLoaded = errors.New("AppArmor profile not loaded")
	// ErrNotInstalled: a user without root cannot load the generated
	// profile, and root has not installed it (safe-run apparmor install).
	ErrNotInstalled = errors.New("AppArmor profile not installed")
)
