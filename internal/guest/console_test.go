package guest

import (
	"strings"
	"testing"
	"time"
)

func TestConsoleMarkers(t *testing.T) {
	var out strings.Builder
	c := &console{out: &out, nonce: "abc", start: time.Now(), status: -1, exited: make(chan struct{})}
	for _, chunk := range []string{
		"[    1.0] booting\r\n",
		"SAFE_RUN_GUEST_READY=abc\r\n",
		"script says SAFE_RUN_GUEST_EXIT=0\r\n", // no nonce: just output
		"SAFE_RUN_GUEST_EXIT=zzz:0\r\n",         // wrong nonce
		"part of a li", "ne\r\n",
		"[    2.0] kernel noise SAFE_RUN_GUEST_EXIT=abc:42\r\n",
		"[    2.1] reboot: Power down\r\n",
	} {
		c.Write([]byte(chunk))
	}
	if c.status != 42 {
		t.Errorf("status = %d, want 42", c.status)
	}
	select {
	case <-c.exited:
	default:
		t.Error("exited not closed after the exit marker")
	}
	want := "[    1.0] booting\nscript says SAFE_RUN_GUEST_EXIT=0\nSAFE_RUN_GUEST_EXIT=zzz:0\npart of a line\n[    2.1] reboot: Power down\n"
	if out.String() != want {
		t.Errorf("forwarded console:\n%q\nwant\n%q", out.String(), want)
	}
}
