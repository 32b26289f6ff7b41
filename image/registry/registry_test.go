package registry

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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

// TestStalledRegistry: a registry that stops sending, before its answer
// or in the middle of a body, is given up on with an error that says so,
// not waited for forever.
func TestStalledRegistry(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/body" {
			w.Write([]byte("some bytes"))
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	g := &httpGuard{base: http.DefaultTransport, allowHTTP: true, stall: 200 * time.Millisecond}
	client := &http.Client{Transport: g}

	_, err := client.Get(srv.URL + "/answer")
	var stalled *stallError
	if !errors.As(err, &stalled) || !strings.Contains(err.Error(), "sent nothing for 200ms") {
		t.Errorf("no answer: %v", err)
	}

	resp, err := client.Get(srv.URL + "/body")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if string(data) != "some bytes" || !errors.As(err, &stalled) {
		t.Errorf("stalled body: %q, %v", data, err)
	}
}
