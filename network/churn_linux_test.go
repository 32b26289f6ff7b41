package network

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"regexp"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
)

// TestAttachDetachChurn: 20 goroutines attach and detach at random, on one named bridge and on
// bridges of their own, each writing its own firewall chains and map elements outside the state
// lock (issue 19). Twice, with some services attached, the tables must hold the chains and
// elements of exactly the live leases and bridges; at the end nothing is left (stateDir's cleanup checks
// the table, the bridge, the namespaces and the state files; each veth is waited for here).
func TestAttachDetachChurn(t *testing.T) {
	dir := stateDir(t)
	root := stateRoot{dir}
	const workers, rounds = 20, 4
	var mu sync.Mutex
	var veths []string
	live := make([]*Attachment, workers)
	churn := func() {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for r := range rounds {
					if live[w] != nil {
						if err := live[w].Close(); err != nil {
							t.Errorf("Close %s: %v", live[w].lease.Service, err)
						}
						live[w] = nil
					}
					if r == rounds-1 && rand.IntN(2) == 0 {
						return // leave this one detached
					}
					opts := Options{Service: fmt.Sprintf("c%02d", w), StateDir: dir}
					if rand.IntN(2) == 0 {
						opts.Bridge = "conc"
					}
					if rand.IntN(3) == 0 {
						opts.Egress = Egress{All: true}
					}
					a, err := Attach(t.Context(), opts)
					if err != nil {
						t.Errorf("Attach %s: %v", opts.Service, err)
						return
					}
					mu.Lock()
					veths = append(veths, a.lease.HostVeth)
					mu.Unlock()
					live[w] = a
					time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
				}
			})
		}
		wg.Wait()
	}
	for pass := range 2 {
		churn()
		if t.Failed() {
			break
		}
		assertTableMatchesLeases(t, root, fmt.Sprintf("pass %d", pass))
	}
	for _, a := range live {
		if a != nil {
			if err := a.Close(); err != nil {
				t.Errorf("Close %s: %v", a.lease.Service, err)
			}
		}
	}
	for _, v := range veths {
		waitLinkGone(t, v)
	}
}

// assertTableMatchesLeases checks that the root's tables hold, for every live lease and no other,
// its three chains (egress and host addresses in inet, anti-spoofing in bridge) and the map
// elements, keyed by its bridge's interface and its address (its veth for the port map), that
// jump to exactly those chains; and, for every live bridge and no other, its elements in the
// skeleton's sets.
func assertTableMatchesLeases(t *testing.T, root stateRoot, when string) {
	t.Helper()
	bridges, err := root.bridges()
	if err != nil {
		t.Fatal(err)
	}
	f := root.fw()
	want := map[string]map[string]bool{} // what -> "key -> value"
	add := func(what, entry string) {
		if want[what] == nil {
			want[what] = map[string]bool{}
		}
		want[what][entry] = true
	}
	live := 0
	if len(bridges) > 0 {
		add("ip chains", layoutChain)
	}
	for _, b := range bridges {
		for set, elems := range bridgeElems(b) {
			for _, e := range elems {
				add("set "+set, fmt.Sprintf("%x", e.Key))
			}
		}
		for _, l := range b.Leases {
			live++
			add("ip chains", egressChain(l))
			add("ip chains", hostChain(l))
			add("bridge chains", portChain(l))
			add("map "+mapForward, fmt.Sprintf("%x -> %s", memberKey(b, l), egressChain(l)))
			add("map "+mapInput, fmt.Sprintf("%x -> %s", memberKey(b, l), hostChain(l)))
			add("map "+mapPorts, fmt.Sprintf("%x -> %s", ifKey(l.HostVeth), portChain(l)))
		}
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]bool{}
	for what := range want {
		got[what] = map[string]bool{}
	}
	for name, s := range f.sets {
		if s.IsMap {
			continue
		}
		elems, err := c.GetSetElements(s)
		if err != nil {
			t.Fatalf("%s: set %s: %v", when, name, err)
		}
		for _, e := range elems {
			got["set "+name][fmt.Sprintf("%x", e.Key)] = true
		}
	}
	// The library does not decode a verdict map's verdicts: nft(8) does.
	for _, m := range []struct {
		name string
		fam  string
	}{{mapForward, "ip"}, {mapInput, "ip"}, {mapPorts, "bridge"}} {
		out, err := exec.Command("nft", "list", "map", m.fam, root.table(), m.name).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: nft list map %s: %v\n%s", when, m.name, err, out)
		}
		for _, e := range mapElemRE.FindAllStringSubmatch(string(out), -1) {
			key := ifKey(e[1])
			if e[2] != "" {
				a := netip.MustParseAddr(e[2]).As4()
				key = append(key, a[:]...)
			}
			got["map "+m.name][fmt.Sprintf("%x -> %s", key, e[3])] = true
		}
	}
	for what, t := range map[string]*nftables.Table{"ip chains": f.ip, "bridge chains": f.br} {
		chains, err := c.ListChainsOfTableFamily(t.Family)
		if err != nil {
			panic(err)
		}
		got[what] = map[string]bool{}
		for _, ch := range chains {
			if ch.Table.Name == t.Name && ch.Hooknum == nil {
				got[what][ch.Name] = true
			}
		}
	}
	for what := range got {
		w, g := sorted(want[what]), sorted(got[what])
		if !slices.Equal(w, g) {
			t.Errorf("%s: %s: the table has %v, the live leases %v", when, what, g, w)
		}
	}
	if live == 0 {
		t.Errorf("%s: no service was left attached; the check checked nothing", when)
	}
}

// mapElemRE is one element of a verdict map as nft lists it: "sr-…" . 10.89.0.2 : jump egress-sv-…,
// or sv-… : jump m-sv-… (a lone interface name unquoted).
var mapElemRE = regexp.MustCompile(`"?([a-z0-9-]+)"?(?: \. ([0-9.]+))? : jump ([a-z0-9-]+)`)

func sorted(m map[string]bool) []string {
	s := slices.Collect(maps.Keys(m))
	sort.Strings(s)
	return s
}
