package testenv

import (
	"net"
	"testing"
)

// FreePort is a TCP port that was free on 127.0.0.1 a moment ago, for a
// service a test publishes.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
