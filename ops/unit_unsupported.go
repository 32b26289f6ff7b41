//go:build !linux

package ops

// SystemdUnit is the systemd unit this process runs under: none here.
func SystemdUnit() string { return "" }
