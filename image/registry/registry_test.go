package registry

import (
	"errors"
	"net/http"
	"testing"
)

// TestPlainHTTPOnlyToLoopback: not on loopback, plain HTTP is refused
// whatever [insecure] says. The guard is what refuses; no request leaves.
func TestPlainHTTPOnlyToLoopback(t *testing.T) {
	g := &httpGuard{base: roundTripFunc(func(*http.Request) (*http.Response, error) {
		t.Fatal("a plain HTTP request to a non-loopback registry was sent")
		return nil, nil
	}), allowHTTP: true}
	for _, u := range []string{"http://10.1.2.3:5000/v2/", "http://registry.example/v2/", "http://[fe80::1]:5000/v2/"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		if _, err := g.RoundTrip(req); !errors.Is(err, ErrPlainHTTP) {
			t.Errorf("%s: %v", u, err)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
