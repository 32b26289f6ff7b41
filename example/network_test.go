package example_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/safe-run/safe-run/internal/testenv"
	"github.com/safe-run/safe-run/network"
)

// TestNetwork runs the examples and small probe services in bridge mode
// through bin/safe-run, as root, with real namespaces, veths, bridges and
// nftables rules, and checks what the networking contract promises from
// outside: what is reachable, from where, and that nothing is left behind.
//
// Traffic goes only to loopback and to a test host: a network namespace
// the test makes, joined to the host by a veth pair in 198.51.100.0/24
// (TEST-NET-2, documentation only). Every service runs under a state
// directory of the test's own, so its bridges, nft table (inet
// safe_run_HASH) and links never meet those of another run.
func TestNetwork(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.Long(t)
	testenv.RequireTool(t, "ip")
	testenv.RequireTool(t, "nft")
	e := newNetEnv(t)
	redisRootfs := testenv.DebianRootfs(t, "redis", redisPackages...)
	nginxRootfs := testenv.DebianRootfs(t, "nginx", nginxPackages...)
	th := newTestHost(t)

	// probe is the script's prelude of the probe services (redis's root
	// filesystem: bash, coreutils, redis-cli). probe ADDR PORT prints
	// "open ADDR:PORT" or "closed ADDR:PORT" (a drop takes its 3 s, so
	// scripts run probes at once: "probe A P & probe B Q & wait"); gw is
	// the bridge's gateway, printed first.
	const probe = `probe() { if timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; then echo "open $1:$2"; else echo "closed $1:$2"; fi; }
gw=$(sed -n 's/^nameserver //p' /etc/resolv.conf)
echo "gateway $gw"
`
	// probeService writes the manifest of a service that runs script;
	// extra is TOML added at its end.
	probeService := func(name, bridge, egress, script string, extra ...string) string {
		return e.manifest(t, name, fmt.Sprintf(`version = 1
name = %q

[image]
rootfs = %q

[process]
command = ["bash", "-c", %q]
user = "redis:redis"
stop_timeout = "2s"

[resources]
memory = "64M"
cpus = 0.5
pids = 32

[network]
mode = "bridge"
bridge = %q
egress = %s
`, name, redisRootfs, probe+script, bridge, egress)+strings.Join(extra, ""))
	}
	// landlockOff leaves the nftables table alone in the way of a
	// service's TCP connections: Landlock's connect rules (by port,
	// package landlock) would refuse an undeclared port first, in the
	// service's own connect, with no packet for the table to drop and
	// log.
	const landlockOff = `
[security]
landlock = "off"

[insecure]
reason = "the test checks the nftables egress table and its denial log"
allow = ["landlock_off"]
`

	t.Run("shop", func(t *testing.T) {
		shop := e.name("shop")
		edits := uniqueNetwork(t, shop)
		port := regexp.MustCompile(`ports = \["(\d+):80"`)
		redis := e.start(t, exampleManifest(t, e.dir, "redis", redisRootfs, "", edits...))
		redisAddr := redis.address(t)
		redis.waitOutput(t, "Ready to accept connections", 30*time.Second)
		// nginx as the example has it, and besides on the host's address
		// that faces the test host, the one port a LAN would be given.
		// And on every address (0.0.0.0).
		lanPort := strconv.Itoa(testenv.FreePort(t))
		lan := net.JoinHostPort(th.hostAddr.String(), lanPort)
		anyPort := strconv.Itoa(testenv.FreePort(t))
		nginxManifest := exampleManifest(t, e.dir, "nginx", nginxRootfs, "", append([]edit{
			{`(?m)^ports = \["8080:80"\]`, fmt.Sprintf(`ports = ["%d:80", "%s:80", "0.0.0.0:%s:80"]`, testenv.FreePort(t), lan, anyPort), false}}, edits...)...)
		nginx := e.start(t, nginxManifest)
		nginxAddr := nginx.address(t)
		text, _ := os.ReadFile(nginxManifest)
		m := port.FindSubmatch(text)
		if m == nil {
			t.Fatalf("%s: no published port 80 (the example and the test no longer agree):\n%s", nginxManifest, text)
		}
		hostPort := string(m[1])

		t.Run("published page from the host", func(t *testing.T) {
			url := "http://127.0.0.1:" + hostPort + "/"
			var body string
			var err error
			for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if body, err = httpGet(url); err == nil {
					break
				}
			}
			if err != nil || !strings.Contains(body, "<p>Hello from nginx under safe-run.</p>") {
				t.Fatalf("GET %s (nginx's published 80): %v, body %q\nnginx stderr:\n%s", url, err, body, nginx.stderr())
			}
		})

		t.Run("store by name from the bridge", func(t *testing.T) {
			// The example client itself, moved to the test's bridge.
			visits := e.start(t, exampleManifest(t, e.dir, "visits", redisRootfs, "", edits...))
			visits.waitOutput(t, "visits: 1", 30*time.Second)
			visits.stop(t)
			c := e.run(t, probeService(e.name("client"), shop, `"none"`, fmt.Sprintf(`
for i in $(seq 50); do p=$(redis-cli -h redis ping 2>&1) && [ "$p" = PONG ] && break; sleep 0.2; done
echo "redis: $p"
echo "redis.%s: $(redis-cli -h redis.%s ping 2>&1)"`, shop, shop)), 0)
			for _, want := range []string{"redis: PONG", "redis." + shop + ": PONG"} {
				if !c.printed(want) {
					t.Errorf("a service on bridge %s: want %q (redis-cli -h NAME ping through the bridge's resolver)\nstdout:\n%s\nstderr:\n%s", shop, want, c.stdout(), c.stderr())
				}
			}
		})

		t.Run("store from another bridge", func(t *testing.T) {
			other := e.name("other")
			c := e.run(t, probeService(e.name("outsider"), other, `"all"`, fmt.Sprintf(`
probe %s 6379
getent hosts redis >/dev/null && echo "redis resolves" || echo "redis: no such name"
getent hosts redis.%s >/dev/null && echo "redis.%s resolves" || echo "redis.%s: no such name"
getent hosts $(cat /etc/hostname) >/dev/null && echo "own name resolves"`, redisAddr, shop, shop, shop)), 0)
			for _, want := range []string{"closed " + redisAddr.String() + ":6379", "redis: no such name", "redis." + shop + ": no such name", "own name resolves"} {
				if !c.printed(want) {
					t.Errorf("a service on bridge %s (egress all) reaches redis on bridge %s: want %q\nstdout:\n%s\nstderr:\n%s", other, shop, want, c.stdout(), c.stderr())
				}
			}
		})

		t.Run("declared LAN port", func(t *testing.T) {
			var body string
			err := inNetns(th.ns, func() (err error) {
				body, err = httpGet("http://" + lan + "/")
				return err
			})
			if err != nil || !strings.Contains(body, "<p>Hello from nginx under safe-run.</p>") {
				t.Fatalf("GET http://%s/ from the test host (nginx's published %s:80): %v, body %q", lan, lan, err, body)
			}
			// 0.0.0.0: every address of the host, the test host's side and loopback.
			err = inNetns(th.ns, func() (err error) {
				body, err = httpGet("http://" + net.JoinHostPort(th.hostAddr.String(), anyPort) + "/")
				return err
			})
			if err != nil || !strings.Contains(body, "<p>Hello from nginx under safe-run.</p>") {
				t.Errorf("GET http://%s:%s/ from the test host (nginx's published 0.0.0.0:%s:80): %v, body %q", th.hostAddr, anyPort, anyPort, err, body)
			}
			if body, err = httpGet("http://127.0.0.1:" + anyPort + "/"); err != nil || !strings.Contains(body, "<p>Hello from nginx under safe-run.</p>") {
				t.Errorf("GET http://127.0.0.1:%s/ (nginx's published 0.0.0.0:%s:80): %v, body %q", anyPort, anyPort, err, body)
			}
			// The same port on loopback is no declared tuple.
			if c, err := net.DialTimeout("tcp4", "127.0.0.1:"+lanPort, 2*time.Second); err == nil {
				c.Close()
				t.Errorf("127.0.0.1:%s is reachable on the host; only %s:80 was published", lanPort, lan)
			}
		})

		t.Run("host firewall applies to published ports", func(t *testing.T) {
			// A table of the test's own drops the LAN port in the input
			// hook, as a ufw or firewalld rule would: the forwarder is a
			// socket of the host, so the rule holds (docker's DNAT would
			// pass it by in forward).
			table := "sre2e_" + e.tag
			nftScript := fmt.Sprintf("table inet %s {\n chain input {\n  type filter hook input priority filter; policy accept;\n  iifname %q tcp dport %s drop\n }\n}\n", table, th.veth, lanPort)
			cmd := exec.Command("nft", "-f", "-")
			cmd.Stdin = strings.NewReader(nftScript)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nft -f: %v\n%s\n%s", err, out, nftScript)
			}
			t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", table).Run() })
			if err := th.dial(lan); err == nil {
				t.Errorf("the test host reached nginx's published %s through an input rule that drops it", lan)
			}
			sh(t, "nft", "delete", "table", "inet", table)
			if err := th.dial(lan); err != nil {
				t.Errorf("control: the test host cannot reach %s once the input rule is gone: %v", lan, err)
			}
		})

		t.Run("resolver refuses the LAN", func(t *testing.T) {
			subnet := netip.PrefixFrom(nginxAddr, 24).Masked()
			th.route(t, subnet)
			gw := subnet.Addr().Next()
			var r *dns.Msg
			err := inNetns(th.ns, func() (err error) {
				q := new(dns.Msg)
				q.SetQuestion("redis.", dns.TypeA)
				r, _, err = (&dns.Client{Timeout: 2 * time.Second}).Exchange(q, net.JoinHostPort(gw.String(), "53"))
				return err
			})
			t.Logf("the test host's query to %s:53: %v", gw, func() any {
				if err != nil {
					return err
				}
				return dns.RcodeToString[r.Rcode]
			}())
			if err == nil && r.Rcode != dns.RcodeRefused {
				t.Errorf("the test host asked bridge %s's resolver at %s for redis: %s %v, want REFUSED or no answer", shop, gw, dns.RcodeToString[r.Rcode], r.Answer)
			}
		})

		t.Run("undeclared ports closed to a test host", func(t *testing.T) {
			// The test host routes the bridge's subnet through the host,
			// as a machine on the LAN whose admin added that route would.
			subnet := netip.PrefixFrom(nginxAddr, 24).Masked()
			th.route(t, subnet)
			// Forwarding is on (the egress-all outsider above needed it), or
			// every check below would pass for the wrong reason.
			if fwd, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(string(fwd)) != "1" {
				t.Fatalf("net.ipv4.ip_forward = %s after a service with egress all ran; want 1", fwd)
			}
			// The control: the test host reaches the host at all.
			ln := listen(t, "tcp4", net.JoinHostPort(th.hostAddr.String(), "0"))
			if err := th.dial(ln.Addr().String()); err != nil {
				t.Fatalf("control: the test host cannot reach a listener of the host at %s: %v", ln.Addr(), err)
			}
			for _, c := range []struct{ what, addr string }{
				{"nginx's container port 80", net.JoinHostPort(nginxAddr.String(), "80")},
				{"redis's container port 6379", net.JoinHostPort(redisAddr.String(), "6379")},
				{"nginx's published 127.0.0.1:" + hostPort + " at the host's veth address", net.JoinHostPort(th.hostAddr.String(), hostPort)},
			} {
				if err := th.dial(c.addr); err == nil {
					t.Errorf("the test host (%s) connected to %s at %s; only the declared (address, port) may be reachable", th.addr, c.what, c.addr)
				}
			}
		})
		nginx.stop(t)
		redis.stop(t)
	})

	t.Run("host closed to services", func(t *testing.T) {
		lo := listen(t, "tcp4", "127.0.0.1:0")
		any := listen(t, "tcp4", "0.0.0.0:0")
		_, loPort, _ := net.SplitHostPort(lo.Addr().String())
		_, anyPort, _ := net.SplitHostPort(any.Addr().String())
		peer := th.listen(t)
		name := e.name("probe")
		c := e.run(t, probeService(name, "", `"all"`, fmt.Sprintf(`
probe "$gw" %s & probe "$gw" %s & probe %s %s & probe %s %s & probe %s %s & wait`, loPort, anyPort, th.hostAddr, anyPort, th.addr, peer[0], "127.0.0.1", loPort)), 0)
		gw := c.gateway(t)
		for _, want := range []string{
			"closed " + gw + ":" + loPort,                    // a loopback listener, through the gateway
			"closed " + gw + ":" + anyPort,                   // a wildcard listener on the gateway
			"closed " + th.hostAddr.String() + ":" + anyPort, // the host's other addresses
			"open " + th.addr.String() + ":" + peer[0],       // the control: egress all reaches the test host
			"closed 127.0.0.1:" + loPort,                     // its own loopback is not the host's
		} {
			if !c.printed(want) {
				t.Errorf("service %s (egress all, gateway %s): want %q\nstdout:\n%s\nstderr:\n%s", name, gw, want, c.stdout(), c.stderr())
			}
		}
	})

	t.Run("egress", func(t *testing.T) {
		ports := th.listen(t)
		p1, p2 := ports[0], ports[1]
		a, b, h := th.addr.String(), th.addr2.String(), th.hostAddr.String()
		_, hp1, _ := net.SplitHostPort(listen(t, "tcp4", "0.0.0.0:0").Addr().String())
		_, hp2, _ := net.SplitHostPort(listen(t, "tcp4", "0.0.0.0:0").Addr().String())
		script := fmt.Sprintf("probe %s %s & probe %s %s & probe %s %s & probe %s %s & probe %s %s & wait", a, p1, a, p2, b, p1, h, hp1, h, hp2)
		for _, tc := range []struct {
			name, egress string
			open, closed []string
			denied       []string
			landlock     bool // the generated Landlock ruleset too: no denial reaches the table
		}{
			{"none", `"none"`, nil, []string{a + ":" + p1, a + ":" + p2, b + ":" + p1, h + ":" + hp1}, []string{a + ":" + p1 + "/tcp", h + ":" + hp1 + "/tcp"}, false},
			// all: anywhere but the host.
			{"all", `"all"`, []string{a + ":" + p1, a + ":" + p2, b + ":" + p1}, []string{h + ":" + hp1}, []string{h + ":" + hp1 + "/tcp"}, false},
			{"list", fmt.Sprintf(`["%s/32:%s/tcp"]`, a, p1), []string{a + ":" + p1}, []string{a + ":" + p2, b + ":" + p1}, []string{a + ":" + p2 + "/tcp", b + ":" + p1 + "/tcp"}, false},
			// An entry that names a host address opens it, that port only.
			{"list-host", fmt.Sprintf(`["%s/32:%s/tcp"]`, h, hp1), []string{h + ":" + hp1}, []string{h + ":" + hp2, a + ":" + p1}, []string{h + ":" + hp2 + "/tcp", a + ":" + p1 + "/tcp"}, false},
			// With Landlock (ABI 4): the other port is refused by the
			// service's own ruleset, before any packet; another address
			// on the declared port still only by the table.
			{"list-landlock", fmt.Sprintf(`["%s/32:%s/tcp"]`, a, p1), []string{a + ":" + p1}, []string{a + ":" + p2, b + ":" + p1}, []string{b + ":" + p1 + "/tcp"}, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				name := e.name("egress-" + tc.name)
				extra := landlockOff
				if tc.landlock {
					testenv.RequireLandlock(t, 4)
					extra = ""
				}
				c := e.run(t, probeService(name, "", tc.egress, script, extra), 0)
				for _, o := range tc.open {
					if !c.printed("open " + o) {
						t.Errorf("egress %s: %s is not reachable from service %s\nstdout:\n%s\nstderr:\n%s", tc.egress, o, name, c.stdout(), c.stderr())
					}
				}
				for _, o := range tc.closed {
					if !c.printed("closed " + o) {
						t.Errorf("egress %s: %s is reachable from service %s\nstdout:\n%s\nstderr:\n%s", tc.egress, o, name, c.stdout(), c.stderr())
					}
				}
				for _, d := range tc.denied {
					line := name + ": egress denied " + d
					if !strings.Contains(c.stderr(), line) {
						t.Errorf("egress %s: safe-run's stderr has no line %q\nstderr:\n%s", tc.egress, line, c.stderr())
					}
				}
				if tc.landlock {
					// Refused in the service: no packet ever reached the table.
					if line := name + ": egress denied " + a + ":" + p2 + "/tcp"; strings.Contains(c.stderr(), line) {
						t.Errorf("egress %s with Landlock: the table saw %q, which the ruleset should have refused first\nstderr:\n%s", tc.egress, line, c.stderr())
					}
				}
			})
		}
	})

	t.Run("egress by hostname", func(t *testing.T) {
		// The test host runs the upstream resolver ([network] dns): it
		// says api.test is the test host's first address, then its second.
		// The service finds the name through its bridge's resolver, and
		// safe-run opens the port at whatever the name resolves to now.
		var mu sync.Mutex
		current := th.addr
		srv := &dns.Server{Net: "udp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(req)
			if q := req.Question[0]; strings.EqualFold(q.Name, "api.test.") && q.Qtype == dns.TypeA {
				mu.Lock()
				a := current
				mu.Unlock()
				m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: a.AsSlice()}}
			} else if q.Qtype != dns.TypeAAAA || !strings.EqualFold(q.Name, "api.test.") {
				m.Rcode = dns.RcodeNameError
			}
			w.WriteMsg(m)
		})}
		if err := inNetns(th.ns, func() (err error) {
			srv.PacketConn, err = net.ListenPacket("udp4", net.JoinHostPort(th.addr.String(), "53"))
			return err
		}); err != nil {
			t.Fatalf("a resolver in the test host: %v", err)
		}
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
		ports := th.listen(t)
		p1, p2 := ports[0], ports[1]
		a, b := th.addr.String(), th.addr2.String()
		name := e.name("byname")
		m := probeService(name, "", fmt.Sprintf(`["api.test:%s"]`, p1), fmt.Sprintf(`
echo "api.test: $(getent hosts api.test | cut -d' ' -f1)"
probe api.test %s & probe %s %s & probe %s %s & wait
echo "switch"
sleep 8  # the name's TTL is 1 s; safe-run looks again after 5 s at least
probe %s %s & probe %s %s & wait`, p1, a, p2, b, p1, b, p1, a, p1))
		text, _ := os.ReadFile(m)
		os.WriteFile(m, append(text, []byte(fmt.Sprintf("dns = [%q]\n", a))...), 0o644)
		s := e.start(t, m)
		s.waitOutput(t, "switch", 30*time.Second)
		mu.Lock()
		current = th.addr2
		mu.Unlock()
		if code := s.wait(t, 60*time.Second); code != 0 {
			t.Fatalf("exit %d\nstderr:\n%s", code, s.stderr())
		}
		before, after, _ := strings.Cut(s.stdout(), "switch\n")
		for _, c := range []struct{ out, want, why string }{
			{before, "api.test: " + a, "the bridge's resolver forwards to [network] dns"},
			{before, "open api.test:" + p1, "egress api.test:" + p1 + " opens the name's address"},
			{before, "closed " + a + ":" + p2, "another port of it stays closed"},
			{before, "closed " + b + ":" + p1, "another address stays closed"},
			{after, "open " + b + ":" + p1, "after the name moved, its new address is open"},
			{after, "closed " + a + ":" + p1, "after the name moved, its old address is closed"},
		} {
			if !contains(strings.Split(c.out, "\n"), c.want) {
				t.Errorf("egress [\"api.test:%s\"]: want %q (%s)\nstdout:\n%s\nstderr:\n%s", p1, c.want, c.why, s.stdout(), s.stderr())
			}
		}
	})

	t.Run("dns per service on a shared bridge", func(t *testing.T) {
		// Two members of one bridge with [network] dns of their own: two
		// resolvers in the test host that give api.test different answers.
		// Each member must get its own upstream's answer.
		for _, up := range []netip.Addr{th.addr, th.addr2} {
			srv := &dns.Server{Net: "udp", Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
				m := new(dns.Msg)
				m.SetReply(req)
				if q := req.Question[0]; q.Qtype == dns.TypeA {
					m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 0}, A: up.AsSlice()}}
				}
				w.WriteMsg(m)
			})}
			if err := inNetns(th.ns, func() (err error) {
				srv.PacketConn, err = net.ListenPacket("udp4", net.JoinHostPort(up.String(), "53"))
				return err
			}); err != nil {
				t.Fatalf("a resolver in the test host: %v", err)
			}
			go srv.ActivateAndServe()
			t.Cleanup(func() { srv.Shutdown() })
		}
		bridge := e.name("updns")
		withDNS := func(m string, up netip.Addr) string {
			text, _ := os.ReadFile(m)
			os.WriteFile(m, append(text, []byte(fmt.Sprintf("dns = [%q]\n", up))...), 0o644)
			return m
		}
		other := e.start(t, withDNS(probeService(e.name("up-b"), bridge, `"none"`, "sleep 60"), th.addr2))
		other.address(t)
		name := e.name("up-a")
		c := e.run(t, withDNS(probeService(name, bridge, `"none"`, `
for i in $(seq 20); do echo "q$i: $(getent hosts q$i.test | cut -d' ' -f1)"; done`), th.addr), 0)
		other.stop(t)
		var wrong []string
		for i := 1; i <= 20; i++ {
			if line := fmt.Sprintf("q%d: %s", i, th.addr); !c.printed(line) {
				wrong = append(wrong, line)
			}
		}
		if len(wrong) > 0 {
			t.Errorf("service %s with dns = [%q] on bridge %s beside one with dns = [%q]: %d of 20 names not answered by its own upstream (want %v)\nstdout:\n%s", name, th.addr, bridge, th.addr2, len(wrong), wrong, c.stdout())
		}
	})

	t.Run("egress udp", func(t *testing.T) {
		// UDP has no handshake: the test host's sockets tell what came.
		var conns [2]net.PacketConn
		var got [2]chan string
		for i := range conns {
			err := inNetns(th.ns, func() (err error) {
				conns[i], err = net.ListenPacket("udp4", th.addr.String()+":0")
				return err
			})
			if err != nil {
				t.Fatalf("UDP in the test host: %v", err)
			}
			t.Cleanup(func() { conns[i].Close() })
			got[i] = make(chan string, 16)
			go func() {
				buf := make([]byte, 512)
				for {
					n, _, err := conns[i].ReadFrom(buf)
					if err != nil {
						return
					}
					got[i] <- string(buf[:n])
				}
			}()
		}
		a := th.addr.String()
		_, p1, _ := net.SplitHostPort(conns[0].LocalAddr().String())
		_, p2, _ := net.SplitHostPort(conns[1].LocalAddr().String())
		// A TCP listener on the UDP port: the entry's /udp keeps it closed.
		var tl net.Listener
		if err := inNetns(th.ns, func() (err error) { tl, err = net.Listen("tcp4", net.JoinHostPort(a, p1)); return err }); err != nil {
			t.Fatalf("TCP in the test host: %v", err)
		}
		serve(t, tl)
		name := e.name("egress-udp")
		c := e.run(t, probeService(name, "", fmt.Sprintf(`["%s/32:%s/udp"]`, a, p1), fmt.Sprintf(`
for i in 1 2 3; do echo allowed >/dev/udp/%s/%s; echo denied >/dev/udp/%s/%s; sleep 0.2; done
probe %s %s`, a, p1, a, p2, a, p1)), 0)
		select {
		case m := <-got[0]:
			if strings.TrimSpace(m) != "allowed" {
				t.Errorf("the test host got %q on %s:%s/udp", m, a, p1)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("egress [%s/32:%s/udp]: no datagram reached %s:%s/udp\nstderr:\n%s", a, p1, a, p1, c.stderr())
		}
		select {
		case m := <-got[1]:
			t.Errorf("egress [%s/32:%s/udp]: a datagram (%q) reached %s:%s/udp", a, p1, m, a, p2)
		case <-time.After(500 * time.Millisecond):
		}
		if !c.printed("closed " + a + ":" + p1) {
			t.Errorf("egress [%s/32:%s/udp] lets TCP to %s:%s through\nstdout:\n%s", a, p1, a, p1, c.stdout())
		}
		if line := name + ": egress denied " + a + ":" + p2 + "/udp"; !strings.Contains(c.stderr(), line) {
			t.Errorf("safe-run's stderr has no line %q\nstderr:\n%s", line, c.stderr())
		}
		// Each denial is an event of the service's journal too.
		journal, _ := os.ReadFile(filepath.Join(e.data, "events", name+".jsonl"))
		if want := `"kind":"egress","message":"egress denied ` + a + ":" + p2 + `/udp`; !strings.Contains(string(journal), want) {
			t.Errorf("the journal has no %s\n%s", want, journal)
		}
	})

	t.Run("denials rate-limited", func(t *testing.T) {
		// 400 datagrams to 400 closed destinations in about a second: the
		// report must not grow with the flood (the kernel lets 10/s, burst
		// 20, reach safe-run; safe-run writes 5 a second).
		a := th.addr.String()
		name := e.name("flood")
		start := time.Now()
		c := e.run(t, probeService(name, "", `"none"`, fmt.Sprintf(`
for p in $(seq 20000 20399); do echo x >/dev/udp/%s/$p; done 2>/dev/null
sleep 1`, a)), 0)
		secs := time.Since(start).Seconds()
		n := strings.Count(c.stderr(), name+": egress denied ")
		if limit := int(5*secs) + 10; n == 0 || n > limit {
			t.Errorf("a flood of 400 denied datagrams in %.1fs gave %d denial lines, want 1..%d\nstderr:\n%s", secs, n, limit, c.stderr())
		}
		t.Logf("400 denied datagrams: %d lines in %.1fs", n, secs)
	})

	t.Run("distinct addresses at once", func(t *testing.T) {
		bridge := e.name("pair")
		var svcs [4]*service
		var wg sync.WaitGroup
		for i := range svcs {
			m := probeService(e.name(fmt.Sprintf("twin%d", i)), bridge, `"none"`, "sleep 60")
			wg.Add(1)
			go func() { defer wg.Done(); svcs[i] = e.startAsync(m) }()
		}
		wg.Wait()
		got := map[netip.Addr]int{}
		for i, s := range svcs {
			t.Cleanup(func() { s.stop(t) })
			if s.startErr != nil {
				t.Fatal(s.startErr)
			}
			a := s.address(t)
			if j, dup := got[a]; dup {
				t.Errorf("twin%d and twin%d, started at once on bridge %s, both got %s", j, i, bridge, a)
			}
			got[a] = i
		}
		for _, s := range svcs {
			s.stop(t)
		}
	})

	t.Run("capabilities stop at the namespace", func(t *testing.T) {
		// NET_ADMIN and NET_RAW in the container's user namespace: the
		// network namespace is safe-run's, owned by the host's, so neither
		// applies to it. nginx's root filesystem has busybox's ip.
		name := e.name("netadmin")
		m := e.manifest(t, name, fmt.Sprintf(`version = 1
name = %q

[image]
rootfs = %q

[process]
command = ["/bin/sh", "-c", %q]

[security]
capabilities = ["NET_ADMIN", "NET_RAW"]

[resources]
memory = "32M"
cpus = 0.2
pids = 16

[network]
mode = "bridge"

[insecure]
reason = "the test shows these capabilities stop at safe-run's network namespace"
allow = ["dangerous_capabilities"]
`, name, nginxRootfs, `
busybox ip addr add 10.89.250.250/32 dev eth0 && echo "address added"
busybox ip route add 10.89.251.0/24 dev eth0 && echo "route added"
busybox ip link set eth0 address 02:00:00:00:00:01 && echo "mac changed"
busybox ip link add dummy0 type dummy && echo "link added"
busybox arping -c 1 -w 1 -I eth0 -s 10.89.250.250 127.0.0.1 >/dev/null 2>&1 && echo "raw packet sent"
echo 1024 2>/dev/null >/proc/sys/net/ipv4/ip_unprivileged_port_start && echo "sysctl changed"
echo "ipv6 off: $(cat /proc/sys/net/ipv6/conf/all/disable_ipv6) $(cat /proc/sys/net/ipv6/conf/default/disable_ipv6)"
echo "ip_unprivileged_port_start: $(cat /proc/sys/net/ipv4/ip_unprivileged_port_start)"
true`))
		c := e.run(t, m, 0)
		for _, bad := range []string{"address added", "route added", "mac changed", "link added", "raw packet sent", "sysctl changed"} {
			if c.printed(bad) {
				t.Errorf("service %s with NET_ADMIN and NET_RAW: %s in its network namespace\nstdout:\n%s", name, bad, c.stdout())
			}
		}
		for _, want := range []string{"ipv6 off: 1 1", "ip_unprivileged_port_start: 0"} {
			if !c.printed(want) {
				t.Errorf("service %s: want %q in its network namespace\nstdout:\n%s\nstderr:\n%s", name, want, c.stdout(), c.stderr())
			}
		}
	})

	t.Run("resolver outlives its first member", func(t *testing.T) {
		// Each member's supervisor serves the bridge's resolver on the
		// gateway (SO_REUSEPORT): when the first stops, the second's still
		// answers. A dead resolver shows as a timeout (exit 124), a live
		// one answers NXDOMAIN for an unknown name at once (exit 2).
		bridge := e.name("dns")
		a, b := e.name("dns-a"), e.name("dns-b")
		first := e.start(t, probeService(a, bridge, `"none"`, "sleep 60"))
		first.address(t)
		second := e.start(t, probeService(b, bridge, `"none"`, fmt.Sprintf(`
for i in $(seq 50); do getent hosts %s >/dev/null && break; sleep 0.1; done
echo "a seen"
for i in $(seq 100); do getent hosts %s >/dev/null || break; sleep 0.2; done
echo "a gone"
timeout 1.5 getent hosts nosuch.%s; echo "unknown name: exit $?"`, a, a, bridge)))
		second.waitOutput(t, "a seen", 30*time.Second)
		first.stop(t)
		if code := second.wait(t, 60*time.Second); code != 0 {
			t.Fatalf("%s: exit %d\nstderr:\n%s", b, code, second.stderr())
		}
		for _, want := range []string{"a gone", "unknown name: exit 2"} {
			if !second.printed(want) {
				t.Errorf("bridge %s after its first member stopped, the second: want %q\nstdout:\n%s\nstderr:\n%s", bridge, want, second.stdout(), second.stderr())
			}
		}
	})

	t.Run("same name twice", func(t *testing.T) {
		// The second start is refused and takes nothing of the first's.
		bridge := e.name("dup")
		name := e.name("dup")
		first := e.start(t, probeService(name, bridge, `"none"`, "sleep 60"))
		v := e.snapshot(t, first)
		second := e.run(t, e.manifest(t, name+"-2", strings.Replace(readFile(t, first.manifest), `stop_timeout = "2s"`, `stop_timeout = "3s"`, 1)), 125)
		if !strings.Contains(second.stderr(), "already") {
			t.Errorf("a second %s on bridge %s: stderr does not say it runs already:\n%s", name, bridge, second.stderr())
		}
		for _, l := range v.links {
			if !linkExists(l) {
				t.Errorf("link %s of the first %s is gone after a second start was refused", l, name)
			}
		}
		for _, n := range v.netns {
			if !mounted(n) {
				t.Errorf("namespace %s of the first %s is gone after a second start was refused", n, name)
			}
		}
		c := e.run(t, probeService(e.name("dup-peer"), bridge, `"none"`, fmt.Sprintf(`echo "first: $(getent hosts %s | cut -d' ' -f1)"`, name)), 0)
		if want := "first: " + first.address(t).String(); !c.printed(want) {
			t.Errorf("after a refused second start, a peer: want %q\nstdout:\n%s\nstderr:\n%s", want, c.stdout(), c.stderr())
		}
		first.stop(t)
	})

	t.Run("SIGKILL beside a live member", func(t *testing.T) {
		bridge := e.name("mixed")
		live := e.start(t, probeService(e.name("live"), bridge, `"none"`, "sleep 60"))
		liveAddr := live.address(t)
		killed := e.start(t, probeService(e.name("gone"), bridge, `"none"`, "sleep 60"))
		killed.address(t)
		killed.cmd.Process.Signal(syscall.SIGKILL)
		killed.wait(t, 30*time.Second)
		// The next member reclaims the dead one's lease and finds the
		// live one where it was.
		c := e.run(t, probeService(e.name("third"), bridge, `"none"`, fmt.Sprintf(`
echo "live: $(getent hosts %s | cut -d' ' -f1)"
getent hosts %s >/dev/null && echo "the dead one resolves" || echo "the dead one: no such name"
ping_ok=closed; timeout 3 bash -c 'exec 3<>/dev/tcp/%s/9' 2>&1 | grep -q refused && ping_ok=reached
echo "live address: $ping_ok"`, e.name("live"), e.name("gone"), liveAddr)), 0)
		for _, want := range []string{"live: " + liveAddr.String(), "the dead one: no such name", "live address: reached"} {
			if !c.printed(want) {
				t.Errorf("after SIGKILL of one member of bridge %s, a new member: want %q\nstdout:\n%s\nstderr:\n%s", bridge, want, c.stdout(), c.stderr())
			}
		}
		live.stop(t)
	})

	t.Run("nothing left", func(t *testing.T) {
		// The state of each case is read while its service runs: the
		// names of its links, to look for after.
		t.Run("normal exit", func(t *testing.T) {
			s := e.start(t, probeService(e.name("clean"), "", `"all"`, "sleep 3; exit 0"))
			seen := e.snapshot(t, s)
			if code := s.wait(t, 30*time.Second); code != 0 {
				t.Fatalf("exit %d, want 0\nstderr:\n%s", code, s.stderr())
			}
			e.requireClean(t, seen)
		})
		t.Run("command fails", func(t *testing.T) {
			s := e.start(t, probeService(e.name("fails"), "", `"none"`, "sleep 3; exit 3"))
			seen := e.snapshot(t, s)
			if code := s.wait(t, 30*time.Second); code != 3 {
				t.Fatalf("exit %d, want 3 (the command's)\nstderr:\n%s", code, s.stderr())
			}
			e.requireClean(t, seen)
		})
		t.Run("command not found", func(t *testing.T) {
			m := probeService(e.name("missing"), "", `"none"`, "")
			text, _ := os.ReadFile(m)
			text = regexp.MustCompile(`(?m)^command = .*$`).ReplaceAll(text, []byte(`command = ["/no/such/command"]`))
			os.WriteFile(m, text, 0o644)
			s := e.start(t, m)
			if code := s.wait(t, 30*time.Second); code != 127 {
				t.Fatalf("exit %d, want 127 (not found)\nstderr:\n%s", code, s.stderr())
			}
			e.requireClean(t, seen{})
		})
		t.Run("default state root", func(t *testing.T) {
			// /run/safe-run/net and table inet safe_run, as a user runs it.
			def := *e
			def.state, def.netDir, def.table, def.shared = "/run/safe-run", network.DefaultStateDir, "safe_run", true
			m := probeService(e.name("default"), "", `"all"`, "sleep 2; exit 0")
			text, _ := os.ReadFile(m)
			os.WriteFile(m, append(text, []byte(fmt.Sprintf(`ports = ["%d:80"]`+"\n", testenv.FreePort(t)))...), 0o644)
			s := def.start(t, m)
			seen := def.snapshot(t, s)
			if code := s.wait(t, 30*time.Second); code != 0 {
				t.Fatalf("exit %d, want 0\nstderr:\n%s", code, s.stderr())
			}
			def.requireClean(t, seen)
		})
		t.Run("signal during start", func(t *testing.T) {
			// SIGTERM at moments of the start: before, during and after the
			// attach; every one leaves nothing.
			for _, d := range []time.Duration{0, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
				m := probeService(e.name("early"), e.name("eb"), `"all"`, "sleep 60")
				text, _ := os.ReadFile(m)
				os.WriteFile(m, append(text, []byte(fmt.Sprintf(`ports = ["%d:80"]`+"\n", testenv.FreePort(t)))...), 0o644)
				s := e.start(t, m)
				time.Sleep(d)
				s.cmd.Process.Signal(syscall.SIGTERM)
				code := s.wait(t, 30*time.Second)
				t.Logf("SIGTERM after %s: exit %d", d, code)
				e.requireClean(t, seen{})
				if t.Failed() {
					t.Fatalf("after SIGTERM %s into the start:\nstderr:\n%s", d, s.stderr())
				}
			}
		})
		t.Run("published port taken", func(t *testing.T) {
			ln := listen(t, "tcp4", "127.0.0.1:0")
			_, p, _ := net.SplitHostPort(ln.Addr().String())
			m := probeService(e.name("taken"), "", `"none"`, "sleep 1")
			text, _ := os.ReadFile(m)
			os.WriteFile(m, append(text, []byte(`ports = ["`+p+`:80"]`+"\n")...), 0o644)
			s := e.start(t, m)
			if code := s.wait(t, 30*time.Second); code != 125 {
				t.Fatalf("exit %d, want 125 (safe-run's own failure: the port is taken)\nstderr:\n%s", code, s.stderr())
			}
			// The port, at its key, with the fix: not what libcontainer
			// met once Attach had removed the namespace under it.
			if want := ": network.ports: publishing 127.0.0.1:" + p + "/tcp: the address is in use by another program (stop it, or choose another host port in [network] ports)"; !strings.Contains(s.stderr(), m+":") || !strings.Contains(s.stderr(), want) {
				t.Errorf("stderr does not name %s, its line and key, and the fix (%q):\n%s", m, want, s.stderr())
			}
			e.requireClean(t, seen{})
		})
		for _, after := range []string{"restart", "network.Cleanup"} {
			t.Run("SIGKILL then "+after, func(t *testing.T) {
				// A published port too: the restart must bind it again.
				port := fmt.Sprintf(`ports = ["%d:80"]`+"\n", testenv.FreePort(t))
				withPort := func(m string) string {
					text, _ := os.ReadFile(m)
					os.WriteFile(m, append(text, []byte(port)...), 0o644)
					return m
				}
				m := withPort(probeService(e.name("killed"), e.name("kb"), `"all"`, "sleep 60"))
				s := e.start(t, m)
				seen := e.snapshot(t, s)
				s.cmd.Process.Signal(syscall.SIGKILL)
				s.wait(t, 30*time.Second)
				if after == "restart" {
					// The same service started again, as systemd would:
					// its stale lease must not stand in its way.
					e.run(t, withPort(probeService(e.name("killed"), e.name("kb"), `"all"`, "true")), 0)
				} else if err := network.Cleanup(e.netDir); err != nil {
					t.Fatalf("network.Cleanup(%s) after SIGKILL: %v", e.netDir, err)
				}
				e.requireClean(t, seen)
			})
		}
	})
}

// netEnv is one test's safe-run: binaries, state and data directories, and
// a tag that makes its names unique.
type netEnv struct {
	dir, state, data string
	netDir           string // the network state root: state/net
	table            string // its nft table (inet)
	shared           bool   // the default root, where other services may run
	tag              string
	bins             testenv.Binaries
}

func newNetEnv(t *testing.T) *netEnv {
	// Not t.TempDir: its parent is 0700, and every component must be
	// traversable by a container's mapped root.
	dir, err := os.MkdirTemp("", "safe-run-network-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e := &netEnv{dir: dir, state: filepath.Join(dir, "state"), data: filepath.Join(dir, "data"), tag: fmt.Sprintf("%x", rand.Uint32()&0xffffff)}
	for _, d := range []string{dir, e.state, e.data} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	e.netDir = filepath.Join(e.state, "net")
	// As network's stateRoot.table names it for a root other than the
	// default.
	h := sha256.Sum256([]byte(e.netDir))
	e.table = "safe_run_" + hex.EncodeToString(h[:])[:8]
	start := time.Now()
	if e.bins, err = testenv.Build(dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("built bin/ in %s", time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		// Whatever a failed test left running is reclaimed.
		if err := network.Cleanup(e.netDir); err != nil {
			t.Errorf("network.Cleanup(%s): %v", e.netDir, err)
		}
	})
	return e
}

// name is a service or bridge name unique to this run.
func (e *netEnv) name(base string) string { return base + "-" + e.tag }

// manifest writes a manifest for service name into the test's directory.
func (e *netEnv) manifest(t *testing.T, name, text string) string {
	t.Helper()
	d := filepath.Join(e.dir, name)
	if err := os.MkdirAll(d, 0o711); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(d, "service.toml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// service is one bin/safe-run process.
type service struct {
	manifest string
	cmd      *exec.Cmd
	out, err testenv.Buffer
	done     chan struct{}
	startErr error
}

func (e *netEnv) startAsync(manifest string) *service {
	s := &service{manifest: manifest, done: make(chan struct{})}
	s.cmd = exec.Command(e.bins.SafeRun, manifest)
	s.cmd.Env = append(os.Environ(), "SAFE_RUN_STATE_DIR="+e.state, "SAFE_RUN_DATA_DIR="+e.data)
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.err
	if err := s.cmd.Start(); err != nil {
		s.startErr = fmt.Errorf("starting safe-run %s: %w", manifest, err)
		close(s.done)
		return s
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	return s
}

// start runs safe-run on manifest in the background; the test's end stops it.
func (e *netEnv) start(t *testing.T, manifest string) *service {
	t.Helper()
	s := e.startAsync(manifest)
	if s.startErr != nil {
		t.Fatal(s.startErr)
	}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// run runs safe-run on manifest to its end and requires exit code want.
func (e *netEnv) run(t *testing.T, manifest string, want int) *service {
	t.Helper()
	s := e.start(t, manifest)
	if code := s.wait(t, 60*time.Second); code != want {
		t.Fatalf("safe-run %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", manifest, code, want, s.stdout(), s.stderr())
	}
	return s
}

// wait waits at most d for safe-run to exit and returns its exit code.
func (s *service) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(d):
		s.cmd.Process.Kill()
		<-s.done
		t.Fatalf("safe-run %s did not exit within %s\nstderr:\n%s", s.manifest, d, s.stderr())
	}
	return s.cmd.ProcessState.ExitCode()
}

// stop asks safe-run to stop (SIGTERM), and kills it after 20 s.
func (s *service) stop(t *testing.T) {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
		t.Errorf("safe-run %s did not stop within 20 s of SIGTERM", s.manifest)
	}
}

func (s *service) stdout() string { return s.out.String() }
func (s *service) stderr() string { return s.err.String() }

// printed reports whether the service printed line on stdout.
func (s *service) printed(line string) bool {
	return contains(strings.Split(s.stdout(), "\n"), line)
}

// waitOutput waits at most d for text on the service's stdout or stderr.
func (s *service) waitOutput(t *testing.T, text string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !strings.Contains(s.stdout(), text) && !strings.Contains(s.stderr(), text) {
		select {
		case <-s.done:
			t.Fatalf("safe-run %s exited (%v) before printing %q\nstdout:\n%s\nstderr:\n%s", s.manifest, s.cmd.ProcessState, text, s.stdout(), s.stderr())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("safe-run %s did not print %q within %s\nstdout:\n%s\nstderr:\n%s", s.manifest, text, d, s.stdout(), s.stderr())
		}
	}
}

var addressRE = regexp.MustCompile(`network: [^\n]*, address ([0-9.]+)`)

// address is the service's address from safe-run's start report.
func (s *service) address(t *testing.T) netip.Addr {
	t.Helper()
	s.waitOutput(t, ", address ", 30*time.Second)
	m := addressRE.FindStringSubmatch(s.stderr())
	if m == nil {
		t.Fatalf("safe-run %s: no address in its start report:\n%s", s.manifest, s.stderr())
	}
	a, err := netip.ParseAddr(m[1])
	if err != nil {
		t.Fatalf("safe-run %s: address %q: %v", s.manifest, m[1], err)
	}
	return a
}

// gateway is the gateway the probe script printed first.
func (s *service) gateway(t *testing.T) string {
	t.Helper()
	line, _, _ := strings.Cut(s.stdout(), "\n")
	gw, ok := strings.CutPrefix(line, "gateway ")
	if !ok {
		t.Fatalf("safe-run %s: no gateway on its first line:\n%s\nstderr:\n%s", s.manifest, s.stdout(), s.stderr())
	}
	return gw
}

// seen are the kernel objects and files of a running service's network.
type seen struct {
	links []string
	netns []string
}

// snapshot waits until the service is attached and reads the names of its
// links and namespace from its lease in the network state: its host-side
// veth, its namespace, and its bridge when it is the bridge's only member.
func (e *netEnv) snapshot(t *testing.T, s *service) seen {
	t.Helper()
	s.address(t)
	name := filepath.Base(filepath.Dir(s.manifest))
	var v seen
	// One directory per bridge: its state (bridge.json) and a file per lease (leases/ADDRESS).
	files, _ := filepath.Glob(filepath.Join(e.netDir, "bridges", "*", "bridge.json"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // gone since the glob (another service of a shared root)
		}
		var b struct {
			Ifname string `json:"ifname"`
		}
		if err := json.Unmarshal(data, &b); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		type lease struct {
			Service  string `json:"service"`
			Netns    string `json:"netns"`
			HostVeth string `json:"host_veth"`
		}
		var leases []lease
		paths, _ := filepath.Glob(filepath.Join(filepath.Dir(f), "leases", "[0-9]*"))
		for _, p := range paths {
			var l lease
			if data, err := os.ReadFile(p); err == nil && json.Unmarshal(data, &l) == nil {
				leases = append(leases, l)
			}
		}
		for _, l := range leases {
			if l.Service != name {
				continue
			}
			v.links = append(v.links, l.HostVeth)
			v.netns = append(v.netns, l.Netns)
			if len(leases) == 1 {
				v.links = append(v.links, b.Ifname)
			}
		}
	}
	if len(v.netns) == 0 {
		t.Fatalf("service %s runs but %s/bridges has no lease of it", name, e.netDir)
	}
	t.Logf("while %s runs: links %v, namespace %v", name, v.links, v.netns)
	for _, l := range v.links {
		if !linkExists(l) {
			t.Fatalf("link %s of the network state does not exist while %s runs", l, name)
		}
	}
	return v
}

// requireClean fails t for anything of the test's network state left: the
// links seen while a service ran, namespace bind mounts, leases, bridges,
// the nft table, and any sr-/sv- link attached to a bridge of the state.
func (e *netEnv) requireClean(t *testing.T, v seen) {
	t.Helper()
	for _, l := range v.links {
		if linkExists(l) {
			t.Errorf("link %s is left after the service's exit", l)
		}
	}
	for _, n := range v.netns {
		if _, err := os.Lstat(n); err == nil {
			t.Errorf("network namespace %s is left after the service's exit", n)
		}
		if mounted(n) {
			t.Errorf("network namespace %s is still mounted after the service's exit", n)
		}
	}
	if e.shared {
		// Other services may run under the default root: the table must
		// go only with the last of them.
		if files, _ := filepath.Glob(filepath.Join(e.netDir, "bridges", "*", "bridge.json")); len(files) > 0 {
			t.Logf("%s: other bridges remain (%v): the table stays", e.netDir, files)
			return
		}
	}
	for _, d := range []string{"netns", "files", "bridges", "subnets"} {
		if e.shared {
			break
		}
		ents, _ := os.ReadDir(filepath.Join(e.netDir, d))
		for _, ent := range ents {
			data, _ := os.ReadFile(filepath.Join(e.netDir, d, ent.Name()))
			t.Errorf("%s/%s is left after the service's exit (a lease, namespace or bridge no service holds): %s", d, ent.Name(), data)
		}
	}
	out, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v\n%s", err, out)
	}
	for _, fam := range []string{"ip", "ip6", "bridge", "inet"} {
		if strings.Contains(string(out), "table "+fam+" "+e.table+"\n") {
			t.Errorf("nft table %s %s is left with no service running:\n%s", fam, e.table, nftTable(fam, e.table))
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func nftTable(family, name string) string {
	out, _ := exec.Command("nft", "list", "table", family, name).CombinedOutput()
	return string(out)
}

func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

func mounted(path string) bool {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// testHost is a network namespace of the test's own, joined to the host by
// a veth pair in a /29 of 198.51.100.0/24: the host side has hostAddr, the
// namespace addr and addr2.
type testHost struct {
	ns                    string // path of the namespace
	name, veth            string
	hostAddr, addr, addr2 netip.Addr
}

func newTestHost(t *testing.T) *testHost {
	tag := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	h := &testHost{name: "sre2e-" + tag, veth: "te-" + tag}
	// A /29 no address of the host is in already (another run's), below
	// 198.51.100.192, where network's own tests put theirs.
	used, _ := exec.Command("ip", "-4", "-o", "addr").Output()
	var base netip.Addr
	for _, i := range rand.Perm(24) {
		b := netip.AddrFrom4([4]byte{198, 51, 100, byte(8 * i)})
		p := netip.PrefixFrom(b, 29)
		if !prefixUsed(string(used), p) {
			base = b
			break
		}
	}
	if !base.IsValid() {
		t.Fatal("every /29 of 198.51.100.0/24 is in use on this host")
	}
	h.hostAddr, h.addr = base.Next(), base.Next().Next()
	h.addr2 = h.addr.Next()
	h.ns = "/run/netns/" + h.name
	sh(t, "ip", "netns", "add", h.name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", h.name).Run() })
	sh(t, "ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.name)
	t.Cleanup(func() { exec.Command("ip", "link", "del", h.veth).Run() })
	sh(t, "ip", "addr", "add", h.hostAddr.String()+"/29", "dev", h.veth)
	sh(t, "ip", "link", "set", h.veth, "up")
	for _, a := range []netip.Addr{h.addr, h.addr2} {
		sh(t, "ip", "-n", h.name, "addr", "add", a.String()+"/29", "dev", "eth0")
	}
	sh(t, "ip", "-n", h.name, "link", "set", "eth0", "up")
	sh(t, "ip", "-n", h.name, "link", "set", "lo", "up")
	return h
}

func prefixUsed(ipAddrOutput string, p netip.Prefix) bool {
	for _, m := range regexp.MustCompile(`inet (198\.51\.100\.\d+)/`).FindAllStringSubmatch(ipAddrOutput, -1) {
		if a, err := netip.ParseAddr(m[1]); err == nil && p.Contains(a) {
			return true
		}
	}
	return false
}

// route sends the test host's traffic to p through the host.
func (h *testHost) route(t *testing.T, p netip.Prefix) {
	sh(t, "ip", "-n", h.name, "route", "replace", p.String(), "via", h.hostAddr.String())
}

// listen opens two TCP listeners in the test host (on every address of
// it) that greet and close each connection, and returns their ports.
func (h *testHost) listen(t *testing.T) []string {
	t.Helper()
	var ports []string
	for range 2 {
		var ln net.Listener
		err := inNetns(h.ns, func() (err error) {
			ln, err = net.Listen("tcp4", "0.0.0.0:0")
			return err
		})
		if err != nil {
			t.Fatalf("listening in the test host: %v", err)
		}
		serve(t, ln)
		_, p, _ := net.SplitHostPort(ln.Addr().String())
		ports = append(ports, p)
	}
	return ports
}

// dial connects from the test host to addr, giving up after 2 s.
func (h *testHost) dial(addr string) error {
	return inNetns(h.ns, func() error {
		c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
}

// inNetns runs f on a thread in the network namespace at path: sockets f
// makes belong to that namespace. A thread that cannot return to the
// test's namespace is left locked, so Go ends it with the goroutine.
func inNetns(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		target, err := os.Open(path)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("entering %s: %w", path, err)
			return
		}
		err = f()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// listen opens a listener on the host that greets and closes each
// connection, closed at the test's end.
func listen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln)
	return ln
}

func serve(t *testing.T, ln net.Listener) {
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello\n")
			c.Close()
		}
	}()
}

func httpGet(url string) (string, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("status %s", resp.Status)
	}
	return string(b), err
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
