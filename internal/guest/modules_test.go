package guest

import (
	"os/exec"
	"testing"
)

func TestReadModuleXZ(t *testing.T) {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		skipOrFail(t, &MissingError{What: "busybox", Why: "to decompress modules", Fix: "apt-get install -y busybox-static", Err: err})
	}
	// Compressed as kbuild compresses modules (scripts/Makefile.modinst).
	got, err := readModule(t.Context(), busybox, "testdata/plain.ko.xz")
	if err != nil || string(got) != "not really a kernel module\n" {
		t.Errorf("readModule = %q, %v", got, err)
	}
	if _, err := modDepends(got); err == nil {
		t.Error("modDepends of a non-ELF file succeeded")
	}
}
