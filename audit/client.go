package audit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultHost is where docker listens unless DOCKER_HOST says otherwise.
const DefaultHost = "unix:///var/run/docker.sock"

// Client is a minimal Docker Engine API client: the GET requests audit
// makes, over a unix socket or TCP (with TLS when DOCKER_TLS_VERIFY is set,
// as the docker CLI does).
type Client struct {
	Host    string // as given: unix:///var/run/docker.sock, tcp://127.0.0.1:2375
	http    *http.Client
	base    string // http://docker or https://host:port
	version string // the API version the daemon speaks, from /_ping
	socket  string // unix socket path, "" over TCP
	TLS     bool
}

// NewClient connects to host (DOCKER_HOST syntax); it sends nothing yet.
func NewClient(host string) (*Client, error) {
	u, err := url.Parse(host)
	if err != nil || u.Scheme == "" {
		return nil, fmt.Errorf("DOCKER_HOST %q is not unix:///path or tcp://host:port", host)
	}
	c := &Client{Host: host}
	tr := &http.Transport{ResponseHeaderTimeout: 30 * time.Second}
	switch u.Scheme {
	case "unix":
		c.socket = u.Path
		c.base = "http://docker"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.socket)
		}
	case "tcp", "http", "https":
		scheme := "http"
		if u.Scheme == "https" || os.Getenv("DOCKER_TLS_VERIFY") != "" {
			cfg, err := tlsConfig(os.Getenv("DOCKER_CERT_PATH"))
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = cfg
			scheme, c.TLS = "https", true
		}
		c.base = scheme + "://" + u.Host
	default:
		return nil, fmt.Errorf("DOCKER_HOST %q: scheme %s is not supported (use unix:// or tcp://)", host, u.Scheme)
	}
	c.http = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	return c, nil
}

// tlsConfig loads the docker CLI's client certificate from dir
// (~/.docker by default): ca.pem, cert.pem, key.pem.
func tlsConfig(dir string) (*tls.Config, error) {
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".docker")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"))
	if err != nil {
		return nil, fmt.Errorf("loading the docker client certificate from %s: %w (set DOCKER_CERT_PATH)", dir, err)
	}
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		return nil, fmt.Errorf("loading the docker CA: %w", err)
	}
	pool.AppendCertsFromPEM(ca)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// ErrUnreachable: no docker engine answers at the host.
var ErrUnreachable = errors.New("docker engine unreachable")

// ping learns the API version the daemon speaks; every later request uses
// it, so that old (1.40) and new daemons answer alike.
func (c *Client) ping(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/_ping", nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %w (is dockerd running? set DOCKER_HOST to its socket)", ErrUnreachable, c.Host, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w at %s: /_ping answered %s", ErrUnreachable, c.Host, resp.Status)
	}
	c.version = resp.Header.Get("Api-Version")
	if c.version == "" {
		c.version = "1.40"
	}
	return nil
}

// get decodes the JSON answer to GET /vVERSION/path into v.
func (c *Client) get(ctx context.Context, path string, v any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v"+c.version+path, nil)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	body := io.LimitReader(resp.Body, 64<<20)
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(body, 4<<10))
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decoding the answer: %w", path, err)
	}
	return nil
}

// The Engine API's answers, reduced to the fields audit reads
// (https://docs.docker.com/reference/api/engine/, stable since 1.40).

type apiInfo struct {
	ServerVersion   string
	SecurityOptions []string
	KernelVersion   string
	OperatingSystem string
}

type apiContainerSummary struct {
	ID    string `json:"Id"`
	Names []string
	State string
}

type apiContainer struct {
	ID     string `json:"Id"`
	Name   string
	Config struct {
		Image string
		User  string
		Env   []string
	}
	HostConfig struct {
		Privileged     bool
		CapAdd         []string
		CapDrop        []string
		Devices        []struct{ PathOnHost string }
		NetworkMode    string
		PidMode        string
		IpcMode        string
		UTSMode        string
		UsernsMode     string
		ReadonlyRootfs bool
		Memory         int64
		NanoCpus       int64
		CPUQuota       int64 `json:"CpuQuota"`
		CPUPeriod      int64 `json:"CpuPeriod"`
		CpusetCpus     string
		PidsLimit      *int64
		SecurityOpt    []string
		// PortBindings: "80/tcp" -> where it is published.
		PortBindings map[string][]struct {
			HostIP   string `json:"HostIp"`
			HostPort string
		}
	}
	Mounts []struct {
		Type        string
		Source      string
		Destination string
		RW          bool
	}
	AppArmorProfile string
}
