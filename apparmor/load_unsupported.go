//go:build !linux

package apparmor

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// InstallDir is where Install puts profiles.
const InstallDir = "/etc/apparmor.d"

// LoadOptions say where Load finds the compiler and keeps what it compiled.
type LoadOptions struct {
	CacheDir string
	Parser   string
	Logger   *slog.Logger
}

// LoadResult says what Load did.
type LoadResult struct {
	Compiled bool
	Took     time.Duration
}

// Load fails for a generated profile: only Linux has AppArmor.
func Load(ctx context.Context, p *Profile, opts LoadOptions) (LoadResult, error) {
	if p == nil || p.Policy == "" {
		return LoadResult{}, nil
	}
	return LoadResult{}, errors.ErrUnsupported
}

// InstallOptions say where Install puts a profile.
type InstallOptions struct {
	Dir     string
	Parser  string
	Enabled bool
}

// Install fails: only Linux has AppArmor.
func Install(ctx context.Context, p *Profile, opts InstallOptions) (string, error) {
	return "", errors.ErrUnsupported
}
