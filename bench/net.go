package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/network"
	"github.com/safe-run/safe-run/plan"
)

// The network rows. Every byte goes to loopback or to addresses in network
// namespaces the bench makes: its test host (a namespace with a veth to the
// host and another one on the service's bridge) and the services' own.
const (
	sinkPort, echoPort = 5001, 5002 // netpeer's, inside the container

	transferSize   = 1 << 30
	transferRounds = 5 // timed 1 GiB transfers per path, after one warm-up
	echoConns      = 2000
	echoWarmup     = 100
	fleetSize      = 50
	fleetReport    = 120 * time.Second // every member's start report, at most
	fleetReach     = 30 * time.Second  // then every member reachable by name, at most
)

var (
	netThroughputTable = &table{
		title:   "network: 1 GiB TCP transfer into the service (median of 5, interleaved)",
		columns: []string{"MiB/s", "min", "max", "vs direct", "target"},
	}
	netConnectTable = &table{
		title:   fmt.Sprintf("network: TCP connect + one %d-byte request and answer (%d connections per path, interleaved)", echoSize, echoConns),
		columns: []string{"p50 µs", "p99 µs", "p50 vs direct", "p99 vs direct", "target"},
	}
	netStartTable = &table{
		title: "network: start-to-exit of /bin/true by network mode",
		timed: true,
	}
	netFleetTable = &table{
		title:   fmt.Sprintf("network: %d services started at once on one bridge", fleetSize),
		columns: []string{"first start -> last report", "last report -> all reachable by name", "target"},
	}
)

// echoSize is netpeer's request and answer (bench/netpeer).
const echoSize = 64

// netLab is what the throughput and connect rows share: one service
// running netpeer with both ports published on 127.0.0.1 and on the host's
// end of a veth to the test host, and the test host also on the service's
// bridge, so that it reaches the service's address directly.
type netLab struct {
	rootfs string // the example rootfs plus /bin/netpeer
	ns     string // the test host's name (ip netns), /run/netns/NAME
	hostIP netip.Addr
	thread *nsThread // a thread in the test host's namespace
	// the service
	addr                 netip.Addr // on its bridge
	loSink, loEcho       netip.AddrPort
	vethSink, vethEcho   netip.AddrPort
	directSink, directEc netip.AddrPort
	// the same service run rootless (pasta), published on 127.0.0.1; when
	// it could not run, rlWhy says why
	rlSink, rlEcho netip.AddrPort
	rlWhy          string
}

var labOnce struct {
	sync.Once
	lab *netLab
	err error
}

func (e *env) netLab(ctx context.Context) (*netLab, error) {
	labOnce.Do(func() { labOnce.lab, labOnce.err = e.makeNetLab(ctx) })
	return labOnce.lab, labOnce.err
}

// netRootfs copies the example rootfs and puts a static netpeer into it.
var rootfsOnce struct {
	sync.Once
	dir string
	err error
}

func (e *env) netRootfs(ctx context.Context) (string, error) {
	rootfsOnce.Do(func() {
		dir := filepath.Join(e.tmp, "net-rootfs")
		if _, err := command(ctx, nil, "cp", "-a", e.rootfs, dir); err != nil {
			rootfsOnce.err = err
			return
		}
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, "bin", "netpeer"), "./bench/netpeer")
		cmd.Dir = e.repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if _, err := output(cmd); err != nil {
			rootfsOnce.err = fmt.Errorf("building bench/netpeer: %w", err)
			return
		}
		rootfsOnce.dir = dir
	})
	return rootfsOnce.dir, rootfsOnce.err
}

// tag is unique to this bench process, for the names of the namespaces,
// links and bridges it makes.
func tag() string { return strconv.Itoa(os.Getpid() % 100000) }

func (e *env) makeNetLab(ctx context.Context) (*netLab, error) {
	rootfs, err := e.netRootfs(ctx)
	if err != nil {
		return nil, err
	}
	l := &netLab{rootfs: rootfs, ns: "srb" + tag()}
	// 198.18.0.0/15 is the range RFC 2544 sets aside for benchmarks.
	x := os.Getpid() % 250
	l.hostIP = netip.AddrFrom4([4]byte{198, 18, byte(x), 1})
	peer := netip.AddrFrom4([4]byte{198, 18, byte(x), 2})
	hostLink := "srb" + tag() + "h"
	if err := ipCmds(ctx, [][]string{
		{"netns", "add", l.ns},
	}); err != nil {
		return nil, err
	}
	e.defer_(func() { _ = ipCmds(context.Background(), [][]string{{"netns", "del", l.ns}}) })
	if err := ipCmds(ctx, [][]string{
		{"link", "add", hostLink, "type", "veth", "peer", "name", "vh", "netns", l.ns},
	}); err != nil {
		return nil, err
	}
	e.defer_(func() { _ = ipCmds(context.Background(), [][]string{{"link", "del", hostLink}}) })
	if err := ipCmds(ctx, [][]string{
		{"addr", "add", l.hostIP.String() + "/30", "dev", hostLink},
		{"link", "set", hostLink, "up"},
		{"-n", l.ns, "link", "set", "lo", "up"},
		{"-n", l.ns, "addr", "add", peer.String() + "/30", "dev", "vh"},
		{"-n", l.ns, "link", "set", "vh", "up"},
	}); err != nil {
		return nil, err
	}
	if l.thread, err = newNetnsThread(filepath.Join("/run/netns", l.ns)); err != nil {
		return nil, err
	}
	e.defer_(l.thread.stop)

	lo1, err := freePort()
	if err != nil {
		return nil, err
	}
	lo2, err := freePort()
	if err != nil {
		return nil, err
	}
	loIP := netip.MustParseAddr("127.0.0.1")
	l.loSink, l.loEcho = netip.AddrPortFrom(loIP, lo1), netip.AddrPortFrom(loIP, lo2)
	l.vethSink, l.vethEcho = netip.AddrPortFrom(l.hostIP, lo1), netip.AddrPortFrom(l.hostIP, lo2)
	ports := fmt.Sprintf(`"%s:%d", "%s:%d", "%s:%d", "%s:%d"`, l.loSink, sinkPort, l.loEcho, echoPort,
		l.vethSink, sinkPort, l.vethEcho, echoPort)
	// A named bridge: a bridge of the service's own is a routed veth pair,
	// with no bridge device for the test host to join.
	svc, err := e.startService(ctx, "bench-net", rootfs, "lab"+tag(), ports)
	if err != nil {
		return nil, err
	}
	e.defer_(svc.stop)
	l.addr = svc.addr
	l.directSink, l.directEc = netip.AddrPortFrom(l.addr, sinkPort), netip.AddrPortFrom(l.addr, echoPort)

	// The test host's second leg: a port of the service's bridge, with an
	// address of the bridge's subnet no lease takes (leases count up from
	// the gateway).
	brIf, prefix, err := interfaceWith(svc.gateway)
	if err != nil {
		return nil, err
	}
	brLink := "srb" + tag() + "b"
	if err := ipCmds(ctx, [][]string{
		{"link", "add", brLink, "type", "veth", "peer", "name", "vb", "netns", l.ns},
	}); err != nil {
		return nil, err
	}
	e.defer_(func() { _ = ipCmds(context.Background(), [][]string{{"link", "del", brLink}}) })
	own := prefix.Masked().Addr().As4()
	own[3] = 250
	if err := ipCmds(ctx, [][]string{
		{"link", "set", brLink, "master", brIf, "up"},
		{"-n", l.ns, "addr", "add", netip.PrefixFrom(netip.AddrFrom4(own), prefix.Bits()).String(), "dev", "vb"},
		{"-n", l.ns, "link", "set", "vb", "up"},
	}); err != nil {
		return nil, err
	}
	if why, err := e.startRootlessPeer(ctx, l); err != nil {
		return nil, err
	} else if why != "" {
		l.rlWhy = why
		e.logf("no rootless network rows: %s", why)
	}
	// Every path answers before anything is timed.
	for _, p := range []struct {
		inNS bool
		to   netip.AddrPort
	}{{true, l.directEc}, {true, l.vethEcho}, {false, l.loEcho}, {false, l.rlEcho}} {
		if !p.to.IsValid() {
			continue
		}
		var err error
		deadline := time.Now().Add(10 * time.Second)
		for {
			l.on(p.inNS, func() { _, err = echoOnce(p.to) })
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			return nil, fmt.Errorf("netpeer at %s: %w", p.to, err)
		}
	}
	return l, nil
}

// on runs f in the test host when inNS, else here, in the host's network.
func (l *netLab) on(inNS bool, f func()) {
	if inNS {
		l.thread.do(f)
		return
	}
	f()
}

type netPath struct {
	name string
	inNS bool // sent from the test host
	sink func(*netLab) netip.AddrPort
	echo func(*netLab) netip.AddrPort
	tput float64 // target ratio of throughput to path tputOf's (0: direct), 0 for none
	// tputOf is the path the throughput target compares with
	tputOf int
	p50    float64
	p99    float64
}

var netPaths = []netPath{
	{name: "direct: test host -> the service's address (a port of its bridge)", inNS: true,
		sink: func(l *netLab) netip.AddrPort { return l.directSink }, echo: func(l *netLab) netip.AddrPort { return l.directEc }},
	{name: "published on a veth address, from the test host behind it", inNS: true,
		sink: func(l *netLab) netip.AddrPort { return l.vethSink }, echo: func(l *netLab) netip.AddrPort { return l.vethEcho },
		tput: 0.8, p50: 1.5, p99: 3},
	{name: "published on 127.0.0.1, from the host",
		sink: func(l *netLab) netip.AddrPort { return l.loSink }, echo: func(l *netLab) netip.AddrPort { return l.loEcho },
		tput: 0.5, p50: 1.5, p99: 3},
	{name: "rootless (pasta): published on 127.0.0.1, from the host",
		sink: func(l *netLab) netip.AddrPort { return l.rlSink }, echo: func(l *netLab) netip.AddrPort { return l.rlEcho },
		tput: 0.5, tputOf: 2},
}

func netThroughput(ctx context.Context, e *env) ([]row, error) {
	l, err := e.netLab(ctx)
	if err != nil {
		return nil, err
	}
	samples := make([][]float64, len(netPaths)) // MiB/s
	for round := 0; round <= transferRounds && ctx.Err() == nil; round++ {
		for k := range netPaths {
			p := netPaths[(round+k)%len(netPaths)]
			i := (round + k) % len(netPaths)
			if !p.sink(l).IsValid() {
				continue
			}
			var d time.Duration
			l.on(p.inNS, func() { d, err = transfer(ctx, p.sink(l), transferSize) })
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			if round > 0 {
				samples[i] = append(samples[i], float64(transferSize)/(1<<20)/d.Seconds())
			}
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var rows []row
	medians := make([]float64, len(netPaths))
	for i, p := range netPaths {
		s := samples[i]
		if len(s) == 0 {
			rows = append(rows, row{name: p.name, values: []string{"-", "-", "-", "-", "-"}, note: l.rlWhy})
			continue
		}
		sort.Float64s(s)
		m := medianF(s)
		medians[i] = m
		ratio, target := fmt.Sprintf("%.2fx", m/medians[0]), "-"
		if p.tput > 0 {
			r, of := m/medians[p.tputOf], ""
			if p.tputOf != 0 {
				of = fmt.Sprintf(" of root's (%.2fx)", r)
			}
			target = fmt.Sprintf(">= %.1fx%s: %s", p.tput, of, met(r >= p.tput))
		}
		rows = append(rows, row{name: p.name, values: []string{
			fmt.Sprintf("%.0f", m), fmt.Sprintf("%.0f", s[0]), fmt.Sprintf("%.0f", s[len(s)-1]), ratio, target,
		}})
	}
	rows[0].note = "sender and receiver are Go programs (bench, bench/netpeer) with 1 MiB writes and 256 KiB reads; the time ends when the sink has counted every byte; the sink's container has cpus = " + benchCPUs
	rows[1].note = "the published path crosses safe-run's forwarder (a socket of the supervisor, splice(2) between the two connections)"
	if len(samples[3]) > 0 {
		rows[3].note = "the same service run by an unprivileged user (" + rootlessBenchUser + "): pasta carries the connection into safe-run's network namespace, where the same forwarder runs; its cpus are waived (cgroup v1 cannot delegate them), so the sink is not capped"
	}
	return rows, nil
}

func netConnect(ctx context.Context, e *env) ([]row, error) {
	l, err := e.netLab(ctx)
	if err != nil {
		return nil, err
	}
	samples := make([][]time.Duration, len(netPaths))
	for i := 0; i < echoWarmup+echoConns && ctx.Err() == nil; i++ {
		for k := range netPaths {
			j := (i + k) % len(netPaths)
			p := netPaths[j]
			if !p.echo(l).IsValid() {
				continue
			}
			var d time.Duration
			l.on(p.inNS, func() { d, err = echoOnce(p.echo(l)) })
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p.name, err)
			}
			if i >= echoWarmup {
				samples[j] = append(samples[j], d)
			}
		}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var rows []row
	var b50, b99 time.Duration
	for i, p := range netPaths {
		s := samples[i]
		if len(s) == 0 {
			rows = append(rows, row{name: p.name, values: []string{"-", "-", "-", "-", "-"}, note: l.rlWhy})
			continue
		}
		sort.Slice(s, func(a, b int) bool { return s[a] < s[b] })
		p50, p99 := percentile(s, 50), percentile(s, 99)
		if i == 0 {
			b50, b99 = p50, p99
		}
		r50, r99 := float64(p50)/float64(b50), float64(p99)/float64(b99)
		target := "-"
		if p.p50 > 0 {
			target = fmt.Sprintf("p50 <= %.1fx: %s, p99 <= %.0fx: %s", p.p50, met(r50 <= p.p50), p.p99, met(r99 <= p.p99))
		}
		rows = append(rows, row{name: p.name, values: []string{
			us(p50), us(p99), fmt.Sprintf("%.2fx", r50), fmt.Sprintf("%.2fx", r99), target,
		}})
	}
	rows[0].note = "each connection: connect, write the request, read the answer, close; timed in the sending thread"
	return rows, nil
}

// transfer sends n bytes to the sink at to and waits for its count.
func transfer(ctx context.Context, to netip.AddrPort, n int) (time.Duration, error) {
	start := time.Now()
	c, err := net.DialTCP("tcp4", nil, net.TCPAddrFromAddrPort(to))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	buf := make([]byte, 1<<20)
	for sent := 0; sent < n; sent += len(buf) {
		if _, err := c.Write(buf[:min(len(buf), n-sent)]); err != nil {
			return 0, err
		}
	}
	if err := c.CloseWrite(); err != nil {
		return 0, err
	}
	var got [8]byte
	if _, err := io.ReadFull(c, got[:]); err != nil {
		return 0, fmt.Errorf("reading the sink's count: %w", err)
	}
	if k := binary.BigEndian.Uint64(got[:]); k != uint64(n) {
		return 0, fmt.Errorf("the sink counted %d bytes of %d", k, n)
	}
	return time.Since(start), nil
}

// echoOnce connects, sends one request and reads its answer.
func echoOnce(to netip.AddrPort) (time.Duration, error) {
	req := make([]byte, echoSize)
	copy(req, "safe-run bench")
	start := time.Now()
	c, err := net.DialTCP("tcp4", nil, net.TCPAddrFromAddrPort(to))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(start.Add(5 * time.Second))
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	got := make([]byte, echoSize)
	if _, err := io.ReadFull(c, got); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// netStartTrial is safe-run's start-to-exit of /bin/true in a network mode.
func netStartTrial(name, network string) func(ctx context.Context, e *env) (*trial, error) {
	return func(ctx context.Context, e *env) (*trial, error) {
		envv, err := e.safeRunEnv()
		if err != nil {
			return nil, err
		}
		if strings.Contains(network, "PORT") {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			network = strings.ReplaceAll(network, "PORT", strconv.Itoa(int(p)))
		}
		m, err := e.manifest(name, []string{"/bin/true"}, "\n[network]\n"+network)
		if err != nil {
			return nil, err
		}
		return &trial{run: timedRun(envv, e.safeRun(), "-q", m), note: strings.ReplaceAll(strings.TrimSpace(network), "\n", "; ")}, nil
	}
}

// service is one safe-run started by the bench, in the background.
type service struct {
	name     string
	cmd      *exec.Cmd
	reported time.Time  // when its start report's network line came
	addr     netip.Addr // from that line
	gateway  netip.Addr // the bridge's host side: the first address of its /24
	done     chan struct{}
	stderr   strings.Builder // what it wrote, for errors
	mu       sync.Mutex
}

// launch starts safe-run for a service running netpeer on the net rootfs,
// in bridge mode on bridge ("" = its own) with ports, and returns without
// waiting; reported is closed once its start report's network line came
// (or it ended).
func (e *env) launch(ctx context.Context, name, rootfs, bridge, ports string) (*service, chan struct{}, error) {
	envv, err := e.safeRunEnv()
	if err != nil {
		return nil, nil, err
	}
	nw := "\n[network]\nmode = \"bridge\"\n"
	if bridge != "" {
		nw += fmt.Sprintf("bridge = %q\n", bridge)
	}
	if ports != "" {
		nw += "ports = [" + ports + "]\n"
	}
	m, err := e.manifestFrom(name, fmt.Sprintf("rootfs = %q", rootfs),
		[]string{"/bin/netpeer", strconv.Itoa(sinkPort), strconv.Itoa(echoPort)}, nw)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(e.safeRun(), m)
	cmd.Env = envv
	return startCmd(name, cmd)
}

// startCmd starts cmd, a safe-run of service name, and returns without
// waiting; reported is closed once its start report's network line came
// (or it ended).
func startCmd(name string, cmd *exec.Cmd) (*service, chan struct{}, error) {
	s := &service{name: name, cmd: cmd, done: make(chan struct{})}
	pipe, err := s.cmd.StderrPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, nil, err
	}
	reported := make(chan struct{})
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(pipe)
		seen := false
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.stderr.WriteString(line + "\n")
			if !seen {
				if a, ok := reportAddress(line); ok {
					s.reported, s.addr = time.Now(), a
					s.gateway = gatewayOf(a)
					seen = true
					close(reported)
				}
			}
			s.mu.Unlock()
		}
		_ = s.cmd.Wait()
		if !seen {
			close(reported)
		}
	}()
	return s, reported, nil
}

// startService launches one service and waits for its report.
func (e *env) startService(ctx context.Context, name, rootfs, bridge, ports string) (*service, error) {
	s, reported, err := e.launch(ctx, name, rootfs, bridge, ports)
	if err != nil {
		return nil, err
	}
	return waitReport(ctx, s, reported)
}

// waitReport waits for s's start report.
func waitReport(ctx context.Context, s *service, reported chan struct{}) (*service, error) {
	name := s.name
	select {
	case <-reported:
	case <-time.After(fleetReport):
	case <-ctx.Done():
	}
	if !s.addr.IsValid() {
		s.stop()
		return nil, fmt.Errorf("%s: no start report: %s", name, s.lastLine())
	}
	return s, nil
}

func (s *service) lastLine() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := strings.TrimSpace(s.stderr.String())
	if i := strings.LastIndexByte(t, '\n'); i >= 0 {
		t = t[i+1:]
	}
	if t == "" {
		return "nothing on stderr"
	}
	return t
}

// stop ends the service (SIGTERM, then SIGKILL after 20 s) and waits.
func (s *service) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// reportAddress finds the service's address in the start report's line
// "safe-run: NAME: network: ..., address A, ...".
func reportAddress(line string) (netip.Addr, bool) {
	if !strings.Contains(line, ": network: ") {
		return netip.Addr{}, false
	}
	_, rest, ok := strings.Cut(line, ", address ")
	if !ok {
		return netip.Addr{}, false
	}
	if i := strings.IndexByte(rest, ','); i >= 0 {
		rest = rest[:i]
	}
	a, err := netip.ParseAddr(strings.TrimSpace(rest))
	return a, err == nil
}

// gatewayOf is the gateway of the /24 bridge subnet a is in (network
// package: each bridge gets a /24, the gateway its first address).
func gatewayOf(a netip.Addr) netip.Addr {
	b := a.As4()
	b[3] = 1
	return netip.AddrFrom4(b)
}

// interfaceWith finds the host's interface holding a and its prefix.
func interfaceWith(a netip.Addr) (string, netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", netip.Prefix{}, err
	}
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok {
				if p, err := netip.ParsePrefix(n.String()); err == nil && p.Addr() == a {
					return ifc.Name, p, nil
				}
			}
		}
	}
	return "", netip.Prefix{}, fmt.Errorf("no interface of the host has %s (the service's gateway)", a)
}

// netFleet starts fleetSize services on one bridge at once and times, from
// the last start report, until the first member reaches every member by
// name: its resolver answers the name and a TCP connection to the address
// is answered (accepted, or refused by a service not listening yet: the
// address is reachable either way).
func netFleet(ctx context.Context, e *env) ([]row, error) {
	rootfs, err := e.netRootfs(ctx)
	if err != nil {
		return nil, err
	}
	bridge := "bench" + tag()
	began := time.Now()
	var members []*service
	defer func() {
		// All at once: each stop may wait for a member's clean-up.
		var wg sync.WaitGroup
		for _, s := range members {
			wg.Add(1)
			go func() { defer wg.Done(); s.stop() }()
		}
		wg.Wait()
	}()
	var reports []chan struct{}
	for i := 0; i < fleetSize; i++ {
		s, rep, err := e.launch(ctx, fmt.Sprintf("m%02d", i), rootfs, bridge, "")
		if err != nil {
			return nil, err
		}
		members = append(members, s)
		reports = append(reports, rep)
	}
	deadline := time.After(fleetReport)
	for i, rep := range reports {
		select {
		case <-rep:
		case <-deadline:
			return nil, fmt.Errorf("%s: no start report after %s", members[i].name, fleetReport)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !members[i].addr.IsValid() {
			return nil, fmt.Errorf("%s: %s", members[i].name, members[i].lastLine())
		}
	}
	var last time.Time
	for _, s := range members {
		if s.reported.After(last) {
			last = s.reported
		}
	}
	netns, _ := network.Paths(plan.NetworkDir(plan.Dirs{State: filepath.Join(e.tmp, "safe-run", "state")}), members[0].name, bridge)
	th, err := newNetnsThread(netns)
	if err != nil {
		return nil, fmt.Errorf("entering %s's network namespace: %w", members[0].name, err)
	}
	defer th.stop()
	var reachedAt time.Time
	var missing []string
	th.do(func() { reachedAt, missing = reachAll(ctx, members[0].gateway, members, bridge, last.Add(fleetReach)) })
	if len(missing) > 0 {
		return nil, fmt.Errorf("after %s, %s could not reach %d members by name, e.g. %s", fleetReach, members[0].name, len(missing), missing[0])
	}
	d := reachedAt.Sub(last)
	return []row{{
		name:   fmt.Sprintf("bridge %s, members m00..m%02d running netpeer", bridge, fleetSize-1),
		values: []string{ms(last.Sub(began)) + " ms", ms(d) + " ms", "within 5 s: " + met(d <= 5*time.Second)},
		note:   "from m00's network namespace: an A query for each member's name to the bridge's resolver, then a TCP connect to the address (accepted or refused both count)",
	}}, nil
}

// reachAll runs in a member's network namespace: it resolves each member's
// name at the gateway's resolver and connects to the address, until every
// member is reached or the deadline passes. It returns when the last was
// reached, and the names never reached.
func reachAll(ctx context.Context, gateway netip.Addr, members []*service, bridge string, deadline time.Time) (time.Time, []string) {
	left := map[string]bool{}
	for _, s := range members {
		left[s.name] = true
	}
	c := &dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
	server := netip.AddrPortFrom(gateway, 53).String()
	for len(left) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		for _, s := range members {
			if !left[s.name] {
				continue
			}
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(s.name), dns.TypeA)
			r, _, err := c.Exchange(m, server)
			if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				continue
			}
			a, ok := r.Answer[0].(*dns.A)
			if !ok {
				continue
			}
			addr, _ := netip.AddrFromSlice(a.A.To4())
			conn, err := net.DialTimeout("tcp4", netip.AddrPortFrom(addr, echoPort).String(), 300*time.Millisecond)
			if err == nil {
				conn.Close()
			}
			if err == nil || errors.Is(err, syscall.ECONNREFUSED) {
				delete(left, s.name)
			}
		}
		if len(left) > 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	var missing []string
	for n := range left {
		missing = append(missing, n)
	}
	sort.Strings(missing)
	return time.Now(), missing
}

// safeRunBridgeMemory is safeRunMemory's row for a service in bridge mode.
func safeRunBridgeMemory(ctx context.Context, e *env) ([]row, error) {
	p, err := freePort()
	if err != nil {
		return nil, err
	}
	return e.supervisorMemory(ctx, "bench-sleep-bridge",
		fmt.Sprintf("\n[network]\nmode = \"bridge\"\nports = [\"127.0.0.1:%d:80\"]\n", p),
		"safe-run (supervising), mode = bridge, one port",
		"the same with a bridge of its own and one published port: the resolver and the port's forwarder run in the supervisor")
}

// newNetnsThread is an nsThread in the network namespace at path instead
// of a private mount namespace: sockets made there belong to that
// namespace, wherever they are used later.
func newNetnsThread(path string) (*nsThread, error) {
	t := &nsThread{work: make(chan func()), done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with its namespace
		defer close(t.done)
		f, err := os.Open(path)
		if err != nil {
			errc <- err
			return
		}
		err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
		f.Close()
		if err != nil {
			errc <- fmt.Errorf("entering %s: %w", path, err)
			return
		}
		errc <- nil
		for f := range t.work {
			f()
		}
	}()
	if err := <-errc; err != nil {
		<-t.done
		return nil, err
	}
	return t, nil
}

// freePort is a TCP port free on 127.0.0.1 now.
func freePort() (uint16, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port), nil
}

func ipCmds(ctx context.Context, cmds [][]string) error {
	for _, c := range cmds {
		if _, err := command(ctx, nil, "ip", c...); err != nil {
			return fmt.Errorf("ip %s: %w", strings.Join(c, " "), err)
		}
	}
	return nil
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond)) }

func medianF(sorted []float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
