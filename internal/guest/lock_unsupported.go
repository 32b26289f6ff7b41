//go:build !linux

package guest

import (
	"context"
	"errors"
)

func lockFile(ctx context.Context, path string) (unlock func(), err error) {
	return nil, errors.ErrUnsupported
}
