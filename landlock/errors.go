package landlock

import "errors"

// ErrNotInKernel: the kernel has no Landlock, and the manifest requires it.
var ErrNotInKernel = errors.New("Landlock is not in this kernel")
