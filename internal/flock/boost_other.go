//go:build !linux

package flock

// Boost does nothing where threads have no priority of their own.
func Boost() (restore func()) { return func() {} }
