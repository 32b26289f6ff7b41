package guest

import (
	"slices"
	"testing"
)

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd6c5f2000)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f2f1e000000)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007f2f1e2e4000)\n"
	got, err := parseLdd(out)
	want := []string{"/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("parseLdd = %q, %v; want %q", got, err, want)
	}
	if _, err := parseLdd("\tlibfoo.so.1 => not found\n"); err == nil || err.Error() != "library libfoo.so.1 not found" {
		t.Errorf("parseLdd of a missing library: got %v", err)
	}
	if got, err := parseLdd("\tstatically linked\n"); err != nil || len(got) != 0 {
		t.Errorf("parseLdd of a static binary = %q, %v; want nothing", got, err)
	}
}
