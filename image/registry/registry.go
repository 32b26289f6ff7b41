// Package registry is the client package image pulls from a registry with:
// go-containerregistry's remote and Go's HTTP and TLS stacks. It is apart
// so that the binary that runs and supervises containers, which
// libcontainer re-executes as every container's init, links none of it:
// that binary runs images already in the cache, and leaves pulls to
// safe-run-tools (see cmd/safe-run).
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/safe-run/safe-run/policy"
)

// Client pulls from one repository of a registry; it is what image.Options
// Registry connects.
type Client struct {
	repo  name.Repository
	guard *httpGuard
	opts  []remote.Option
}

// New sets up pulls from repo over base (nil: Go's default transport);
// plain HTTP only when allowHTTP and the registry is on loopback.
// Credentials come from the docker config file and its credential helpers
// (authn.DefaultKeychain), as docker pull finds them; no cloud-specific
// keychain is linked in.
func New(repo name.Repository, allowHTTP bool, base http.RoundTripper) *Client {
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
	}
	g := &httpGuard{base: base, allowHTTP: allowHTTP, stall: stallTimeout}
	return &Client{repo: repo, guard: g, opts: []remote.Option{
		remote.WithTransport(g),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
		remote.WithUserAgent("safe-run"),
	}}
}

func (r *Client) with(ctx context.Context) []remote.Option {
	return append(r.opts[:len(r.opts):len(r.opts)], remote.WithContext(ctx))
}

// Head resolves a tag to the digest it names now.
func (r *Client) Head(ctx context.Context, ref name.Reference) (*v1.Descriptor, error) {
	d, err := remote.Head(ref, r.with(ctx)...)
	if err != nil {
		return nil, r.explain(ref.String(), err)
	}
	return d, nil
}

// Manifest fetches the manifest or index d names; the caller checks its
// digest.
func (r *Client) Manifest(ctx context.Context, d v1.Descriptor) ([]byte, error) {
	desc, err := remote.Get(r.repo.Digest(d.Digest.String()), r.with(ctx)...)
	if err != nil {
		return nil, r.explain(r.repo.String()+"@"+d.Digest.String(), err)
	}
	return desc.Manifest, nil
}

// Blob opens the compressed blob d names; the caller checks its digest.
func (r *Client) Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	ref := r.repo.Digest(d.Digest.String())
	l, err := remote.Layer(ref, r.with(ctx)...)
	if err != nil {
		return nil, r.explain(ref.String(), err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, r.explain(ref.String(), err)
	}
	return rc, nil
}

// explain turns a refusal of plain HTTP into the policy's words.
func (r *Client) explain(what string, err error) error {
	host := r.guard.refused.Load()
	if host == nil || r.guard.httpsAnswered.Load() {
		return fmt.Errorf("pulling %s: %w", what, err)
	}
	why := "it answers only over plain HTTP"
	if e := r.guard.httpsErr.Load(); e != nil {
		why = fmt.Sprintf("over HTTPS: %v", *e)
	}
	if !policy.LoopbackHost(*host) {
		return &plainHTTPError{fmt.Sprintf("cannot pull from %s (%s), and plain HTTP is only ever used for loopback registries [SR019 insecure-registry] (serve the registry over HTTPS)", *host, why)}
	}
	return &plainHTTPError{fmt.Sprintf(`cannot pull from %s (%s), and plain HTTP, which anyone on the path can read and tamper with, is refused [SR019 insecure-registry] (serve the registry over HTTPS, or acknowledge plain HTTP to this loopback registry: [insecure] allow = ["insecure_registry"] with a reason)`, *host, why)}
}

// ErrPlainHTTP: a registry was refused because it answers only over plain
// HTTP.
var ErrPlainHTTP = errors.New("plain HTTP refused")

// plainHTTPError is the whole story of a refused registry: package image
// reports it alone, without the steps that led to it.
type plainHTTPError struct{ msg string }

func (e *plainHTTPError) Error() string { return ErrPlainHTTP.Error() + ": " + e.msg }
func (e *plainHTTPError) Unwrap() error { return ErrPlainHTTP }
func (e *plainHTTPError) WholeStory()   {}

// httpGuard refuses every plain HTTP request but those to a loopback
// registry that [insecure] allows. It sits below go-containerregistry,
// which on its own falls back to HTTP for localhost and private
// addresses, and sees every request, redirects included: a registry on
// HTTPS cannot redirect a blob to HTTP either.
//
// It also gives up on a registry that stalls: no answer, or no byte of a
// body, for stall.
type httpGuard struct {
	base      http.RoundTripper
	allowHTTP bool
	stall     time.Duration
	refused   atomic.Pointer[string] // the last host refused
	// httpsAnswered: a request over HTTPS got an answer, so a refusal
	// was only go-containerregistry trying HTTP in parallel.
	httpsAnswered atomic.Bool
	httpsErr      atomic.Pointer[error] // why HTTPS failed, for the message
}

func (g *httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "https" && !(g.allowHTTP && policy.LoopbackHost(req.URL.Host)) {
		host := req.URL.Host
		g.refused.Store(&host)
		return nil, fmt.Errorf("%w: %s", ErrPlainHTTP, req.URL.Redacted())
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	stalled := time.AfterFunc(g.stall, func() { cancel(&stallError{g.stall, req.URL.Host}) })
	resp, err := g.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		stalled.Stop()
		err = stallCause(ctx, err)
		cancel(nil)
	} else {
		resp.Body = &stallReader{ReadCloser: resp.Body, ctx: ctx, cancel: cancel, timer: stalled, stall: g.stall}
	}
	if req.URL.Scheme == "https" {
		if err == nil {
			g.httpsAnswered.Store(true)
		} else {
			g.httpsErr.Store(&err)
		}
	}
	return resp, err
}

// stallTimeout is how long a registry may keep a pull waiting without a
// byte. A registry that hangs (a half-open connection, a stuck proxy)
// would otherwise hang the start for good; a slow one that still sends
// goes on.
const stallTimeout = 60 * time.Second

type stallError struct {
	after time.Duration
	host  string
}

func (e *stallError) Error() string {
	return fmt.Sprintf("%s sent nothing for %s: gave up (check that the registry is up and reachable)", e.host, e.after)
}

// stallReader is a response body whose every read restarts the stall
// timer; the timer cancels the request, and so the read waiting on it.
type stallReader struct {
	io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
	stall  time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.ReadCloser.Read(p)
	if n > 0 {
		s.timer.Reset(s.stall)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = stallCause(s.ctx, err)
	}
	return n, err
}

// stallCause is the stall that cancelled ctx, if one did, else err.
func stallCause(ctx context.Context, err error) error {
	var stalled *stallError
	if errors.As(context.Cause(ctx), &stalled) {
		return stalled
	}
	return err
}

func (s *stallReader) Close() error {
	s.timer.Stop()
	s.cancel(nil)
	return s.ReadCloser.Close()
}
