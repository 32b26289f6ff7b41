//go:build !linux

package network

import (
	"context"
	"errors"
	"net/netip"
)

// Attachment is one service connected to its bridge (Linux only).
type Attachment struct {
	Netns   string
	Address netip.Addr
	Gateway netip.Addr
	Bridge  string
	Files   Files
	Notes   []string
}

func Attach(ctx context.Context, opts Options) (*Attachment, error) {
	return nil, errors.ErrUnsupported
}
func (a *Attachment) Close() error  { return errors.ErrUnsupported }
func StartNamespace() *Namespace    { return nil }
func Cleanup(stateDir string) error { return errors.ErrUnsupported }
func Members(stateDir, bridge string) (map[string]netip.Addr, error) {
	return nil, errors.ErrUnsupported
}
