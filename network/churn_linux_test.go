package network

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TestAttachDetachChurn: 20 goroutines attach and detach at random, on one named bridge and on
// bridges of their own, with the table written outside the state lock by every one of them
// (issue 19; writers without the table's lock and the compare-and-swap fail it). Twice, with some services attached, the table must hold the rules of exactly the
// live leases, at the state's generation; at the end nothing is left (stateDir's cleanup checks
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

// assertTableMatchesLeases checks that the root's tables show the state's generation and hold an
// egress chain and a jump to it for every live lease and no other, and anti-spoofing rules for
// every live lease's veth and no other.
func assertTableMatchesLeases(t *testing.T, root stateRoot, when string) {
	t.Helper()
	gen, bridges, err := root.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	wantChains, wantVeths := map[string]bool{}, map[string]bool{}
	for _, b := range bridges {
		for _, l := range b.Leases {
			wantChains[egressChain(b, l)] = true
			wantVeths[l.HostVeth] = true
		}
	}
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	cur, err := readTable(c, root)
	if err != nil {
		t.Fatal(err)
	}
	if cur.gen != int64(gen) {
		t.Errorf("%s: the table shows generation %d, the state is at %d", when, cur.gen, gen)
	}
	inet := &nftables.Table{Name: root.table(), Family: nftables.TableFamilyINet}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	gotChains := map[string]bool{}
	for _, ch := range chains {
		if ch.Table.Name == root.table() && strings.HasPrefix(ch.Name, "egress-") {
			gotChains[ch.Name] = true
		}
	}
	// Every egress chain is jumped to from forward.
	fwd, err := c.GetRules(inet, &nftables.Chain{Name: "forward", Table: inet})
	if err != nil {
		t.Fatal(err)
	}
	jumps := map[string]bool{}
	for _, r := range fwd {
		for _, e := range r.Exprs {
			if v, ok := e.(*expr.Verdict); ok && v.Kind == expr.VerdictJump {
				jumps[v.Chain] = true
			}
		}
	}
	br := &nftables.Table{Name: root.table(), Family: nftables.TableFamilyBridge}
	members, err := c.GetRules(br, &nftables.Chain{Name: "members", Table: br})
	if err != nil {
		t.Fatal(err)
	}
	gotVeths := map[string]bool{}
	for _, r := range members {
		for _, e := range r.Exprs {
			if cmp, ok := e.(*expr.Cmp); ok && len(cmp.Data) == 16 {
				gotVeths[string(bytes.TrimRight(cmp.Data, "\x00"))] = true
				break
			}
		}
	}
	for what, pair := range map[string][2]map[string]bool{
		"egress chains":       {wantChains, gotChains},
		"jumps from forward":  {wantChains, jumps},
		"anti-spoofing veths": {wantVeths, gotVeths},
	} {
		want, got := sorted(pair[0]), sorted(pair[1])
		if !slices.Equal(want, got) {
			t.Errorf("%s: %s: the table has %v, the live leases %v", when, what, got, want)
		}
	}
	if len(wantVeths) == 0 {
		t.Errorf("%s: no service was left attached; the check checked nothing", when)
	}
}

func sorted(m map[string]bool) []string {
	s := slices.Collect(maps.Keys(m))
	sort.Strings(s)
	return s
}
