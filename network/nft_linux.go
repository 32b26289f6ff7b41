package network

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// syncTable brings safe-run's tables (inet, and bridge: spoof_linux.go) to the state of generation
// gen, bridges, or to a later one, each write one netlink batch, so the kernel switches from the
// old rules to the new ones atomically. It touches no other table, chain policy or iptables rule:
// every base chain here accepts by default and only drops traffic of safe-run's own bridges, and
// a drop in one base chain is final whatever other tables say, while an accept here lets the
// packet go on to theirs. With no bridge left, the tables are deleted.
//
// It runs outside the state lock (issue 19: 50 starts on one bridge waited seconds for each
// other's table writes under it). Why a rewrite of the whole table rather than each service
// adding and removing rules of its own: the rules stay a function of the state files alone,
// written by one function for an Attach, a Close, a Cleanup after a crash and an egress refresh
// alike, and a writer that died half-way leaves nothing for the next to reconcile.
//
// Writers take the table's own lock (tableLock), not the state's: one at a time, each with a
// snapshot of the state read once it holds it. A writer that finds the table at its change's
// generation or later writes nothing, so with 50 starts at once one write covers all the
// changes made while the one before it was written, and most writers only read. Without that
// lock, writers racing with snapshots of their own (a first version) wrote 300 tables for 200
// changes, most refused by the check below after building 500 rules each, and a start took
// longer than with the whole attach under the state lock.
//
// The check: the inet table holds an empty chain named after the generation it shows (gen-N),
// and every batch first deletes the chain its writer saw, or creates the table exclusively when
// it saw none. The kernel runs batches one at a time and aborts a whole batch whose delete finds
// nothing, so a batch applies only to the table its writer read, whatever else writes it (an
// older safe-run, a hand): a table never goes back to an older state than it shows, and once an
// Attach has returned, its rules stay until its own lease goes.
//
// prerouting says whether the inet table has its prerouting chain (see transparentRules), which
// a kernel without nft's socket expression lacks. wait is how long the table's lock was waited
// for.
//
// release closes the nftables sockets, and the caller calls it once it has done what else it
// can: closing a netfilter netlink socket waits until the kernel has freed what earlier
// transactions deleted (the NETLINK_URELEASE notifier, nft_rcv_nl_event, flushes nf_tables'
// destroy work, which waits out an RCU grace period: 8-16 ms here). A batch that replaces or
// deletes the tables deletes; so does any other program's, in this network namespace. Held
// open, the socket's close waits only for what is left of that grace period when the caller is
// done.
func syncTable(root stateRoot, gen uint64, bridges map[string]*bridgeState) (release func(), prerouting bool, wait time.Duration, err error) {
	var conns []*nftables.Conn
	release = func() {
		for _, c := range conns {
			_ = c.CloseLasting()
		}
	}
	conn := func() (*nftables.Conn, error) {
		c, err := nftables.New(nftables.AsLasting(),
			// The kernel answers each rule of the batch: with tens of services
			// the default receive buffer overflows (ENOBUFS at about 33 members).
			nftables.WithSockOptions(func(c *netlink.Conn) error { return c.SetReadBuffer(8 << 20) }))
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		conns = append(conns, c)
		return c, nil
	}
	c, err := conn()
	if err != nil {
		return release, false, 0, err
	}
	// Most writers of a storm find their change written by another: they learn it without the
	// lock, which each would otherwise take in turn only to read.
	cur, err := readTable(c, root)
	if err != nil {
		return release, false, 0, err
	}
	if covered(cur, gen, bridges) {
		return release, cur.prerouting, 0, nil
	}
	began := time.Now()
	tl, err := root.tableLock()
	if err != nil {
		return release, false, 0, err
	}
	defer tl.unlock()
	wait = time.Since(began)
	// A lock taken at once (a lone start): the table read above will do, and the caller's own
	// snapshot; should another writer have slipped in between, the batch's check refuses it
	// and the next round reads again.
	alone := wait < uncontended
	mark, _ := root.transparent()
	for range maxSyncRounds {
		if !alone {
			if cur, err = readTable(c, root); err != nil {
				return release, false, wait, err
			}
			if covered(cur, gen, bridges) {
				return release, cur.prerouting, wait, nil
			}
			// The latest state: the changes made since the caller's go in this write too.
			// It is never older than the table's (tables are written from snapshots, one at
			// a time).
			if now, nb, err := root.snapshot(); err != nil {
				return release, false, wait, err
			} else if now > gen {
				gen, bridges = now, nb
			}
		}
		alone = false
		if err := writeTables(c, root, bridges, mark, cur, gen); err == nil {
			return release, len(bridges) > 0, wait, nil
		}
		// A batch the kernel refused: either the table moved since it was read (another
		// program's commit: read it again), or the kernel has no socket expression
		// (CONFIG_NFT_SOCKET), which still gets its isolation: only the client's address is
		// lost (ensureTransparent is told there is no prerouting chain and says so). A socket
		// of its own each time: the failed batch's answers may still be queued on the last.
		if c, err = conn(); err != nil {
			return release, false, wait, err
		}
		if again, err := readTable(c, root); err != nil || again != cur {
			continue
		}
		werr := writeTables(c, root, bridges, 0, cur, gen)
		if c, err = conn(); err != nil {
			return release, false, wait, err
		}
		if werr != nil {
			if again, err := readTable(c, root); err == nil && again == cur {
				return release, false, wait, werr
			}
		}
	}
	return release, false, wait, fmt.Errorf("nftables table inet %s: still behind the state after %d writes (another program keeps changing it)", root.table(), maxSyncRounds)
}

// uncontended is a table lock wait short enough to say no other writer held it.
const uncontended = 200 * time.Microsecond

// covered says whether table cur was written from generation gen (with bridges) or a later one,
// or there is nothing to delete.
func covered(cur tableState, gen uint64, bridges map[string]*bridgeState) bool {
	return (cur.gen >= 0 && uint64(cur.gen) >= gen) || (cur.gen < 0 && !cur.bridge && len(bridges) == 0)
}

// maxSyncRounds bounds syncTable's writes: each either lands or finds the table newer, so only a
// state that moves on faster than a table write takes more than a few.
const maxSyncRounds = 100

// tableState is what syncTable reads of the inet table before it writes.
type tableState struct {
	gen        int64 // the generation its marker chain names; -1: no table, 0: a table with no marker
	prerouting bool  // it has the prerouting chain
	bridge     bool  // the bridge-family table exists too
}

// genChain names the marker chain of generation gen.
func genChain(gen uint64) string { return "gen-" + strconv.FormatUint(gen, 10) }

// readTable reads the root's tables' state, on a socket of its own.
func (s stateRoot) readTable() (tableState, error) {
	c, err := nftables.New()
	if err != nil {
		return tableState{}, fmt.Errorf("nftables: %w", err)
	}
	defer func() { _ = c.CloseLasting() }()
	return readTable(c, s)
}

func readTable(c *nftables.Conn, root stateRoot) (tableState, error) {
	st := tableState{gen: -1}
	for _, fam := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
		tables, err := c.ListTablesOfFamily(fam)
		if err != nil {
			return st, fmt.Errorf("nftables: listing tables: %w", err)
		}
		for _, t := range tables {
			if t.Name != root.table() {
				continue
			}
			if fam == nftables.TableFamilyBridge {
				st.bridge = true
			} else {
				st.gen = 0
			}
		}
	}
	if st.gen < 0 {
		return st, nil
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return st, fmt.Errorf("nftables: listing chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != root.table() {
			continue
		}
		if ch.Name == preroutingChain {
			st.prerouting = true
		}
		if g, ok := strings.CutPrefix(ch.Name, "gen-"); ok {
			if n, err := strconv.ParseInt(g, 10, 64); err == nil && n > st.gen {
				st.gen = n
			}
		}
	}
	return st, nil
}

// writeTables replaces the tables cur describes with those of generation gen, bridges, in one
// batch on c that the kernel applies only if the inet table is still cur (see syncTable); mark 0
// leaves out the prerouting chain.
func writeTables(c *nftables.Conn, root stateRoot, bridges map[string]*bridgeState, mark uint32, cur tableState, gen uint64) error {
	inet := &nftables.Table{Name: root.table(), Family: nftables.TableFamilyINet}
	br := &nftables.Table{Name: root.table(), Family: nftables.TableFamilyBridge}
	switch {
	case cur.gen > 0:
		// The compare: this chain is gone if anyone wrote since cur was read.
		c.DelChain(&nftables.Chain{Name: genChain(uint64(cur.gen)), Table: inet})
		c.DelTable(inet)
	case cur.gen == 0:
		c.DelTable(inet) // a table without a marker: from before generations, or by hand
	}
	if cur.bridge {
		c.DelTable(br)
	}
	if len(bridges) > 0 {
		if cur.gen < 0 {
			// The compare when there was no table: NLM_F_EXCL fails if one was made since.
			c.CreateTable(inet)
		}
		buildTable(c, inet, bridges, mark)
		c.AddChain(&nftables.Chain{Name: genChain(gen), Table: inet})
		buildSpoofTable(c, br, bridges)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables tables inet and bridge %s: %w", root.table(), err)
	}
	return nil
}

// buildTable fills the inet table; mark is the root's mark for replies to transparent sockets
// (0: no prerouting chain).
func buildTable(c *nftables.Conn, t *nftables.Table, bridges map[string]*bridgeState, mark uint32) {
	c.AddTable(t)
	names := make([]string, 0, len(bridges))
	for n := range bridges {
		names = append(names, n)
	}
	sort.Strings(names)
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}

	// forward: between bridges, out of bridges, into bridges.
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	rule := func(ch *nftables.Chain, e ...expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e}) }
	rule(fwd, append(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept)...)
	for _, n := range names {
		b := bridges[n]
		// Members of one bridge reach each other (seen here only with br_netfilter loaded).
		rule(fwd, append(append(ifname(expr.MetaKeyIIFNAME, b.Ifname), ifname(expr.MetaKeyOIFNAME, b.Ifname)...), accept)...)
	}
	for _, n := range names {
		// Nothing new enters a bridge from elsewhere: not from another bridge, not from the LAN
		// (published ports are sockets on the host, not forwarding).
		rule(fwd, append(ifname(expr.MetaKeyOIFNAME, bridges[n].Ifname), drop)...)
	}
	for _, n := range names {
		b := bridges[n]
		for _, l := range b.Leases {
			ch := c.AddChain(&nftables.Chain{Name: egressChain(b, l), Table: t})
			rule(fwd, append(append(ifname(expr.MetaKeyIIFNAME, b.Ifname), ipAddr(12, l.Address)...),
				&expr.Verdict{Kind: expr.VerdictJump, Chain: ch.Name})...)
			egressRules(c, t, ch, l)
		}
	}
	for _, n := range names {
		// A source address no lease holds is a forgery.
		rule(fwd, append(ifname(expr.MetaKeyIIFNAME, bridges[n].Ifname), drop)...)
	}

	// input: from a bridge the host answers DNS on the gateway, and established traffic (published
	// ports' replies); its own addresses and loopback services stay closed.
	in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	for _, n := range names {
		b := bridges[n]
		rule(in, append(append(ifname(expr.MetaKeyIIFNAME, b.Ifname), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)...), accept)...)
		for _, proto := range []byte{unix.IPPROTO_UDP, unix.IPPROTO_TCP} {
			e := append(ifname(expr.MetaKeyIIFNAME, b.Ifname), ipAddr(16, b.Gateway)...)
			e = append(e, l4proto(proto)...)
			e = append(e, dport(53)...)
			rule(in, append(e, accept)...)
		}
		// An egress entry that names a host address opens it (a database on the host's LAN
		// address, say); an entry for every address (0.0.0.0/0) does not: it means "the internet".
		for _, l := range b.Leases {
			for _, r := range l.Egress.Rules {
				if r.Host == "" && r.Prefix.Bits() == 0 {
					continue
				}
				for _, e := range egressMatches(r) {
					rule(in, append(append(append(ifname(expr.MetaKeyIIFNAME, b.Ifname), ipAddr(12, l.Address)...), e...), accept)...)
				}
			}
		}
		rule(in, append(ifname(expr.MetaKeyIIFNAME, b.Ifname), drop)...)
	}

	// prerouting: the service's replies to a forwarder that dialled from its client's address go
	// to that forwarder (transparent_linux.go).
	if mark != 0 {
		pre := c.AddChain(&nftables.Chain{Name: preroutingChain, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle})
		ifnames := make([]string, 0, len(names))
		for _, n := range names {
			ifnames = append(ifnames, bridges[n].Ifname)
		}
		transparentRules(func(e ...expr.Any) { rule(pre, e...) }, ifnames, mark)
	}

	// postrouting: what egress lets out leaves with the host's address.
	nat := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	for _, n := range names {
		rule(nat, append(ifname(expr.MetaKeyOIFNAME, bridges[n].Ifname), accept)...)
	}
	for _, n := range names {
		b := bridges[n]
		rule(nat, append(ipPrefix(12, b.Subnet), &expr.Masq{})...)
	}
}

// egressChain names a lease's chain; the address is unique within the table's bridges.
func egressChain(b *bridgeState, l lease) string {
	return "egress-" + b.Ifname + "-" + l.Address.String()
}

// egressRules fills a service's egress chain: what its egress allows is accepted, the rest is
// logged to its NFLOG group (rate-limited in the kernel too) and dropped.
func egressRules(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain, l lease) {
	rule := func(e ...expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e}) }
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	if l.Egress.All {
		rule(accept)
		return
	}
	for _, r := range l.Egress.Rules {
		for _, e := range egressMatches(r) {
			rule(append(e, accept)...)
		}
	}
	rule(&expr.Limit{Type: expr.LimitTypePkts, Rate: 10, Unit: expr.LimitTimeSecond, Burst: 20},
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN, Group: l.LogGroup, Snaplen: 64})
	rule(&expr.Verdict{Kind: expr.VerdictDrop})
}

// egressMatches turns one egress entry into the matches of the packets it allows, one per
// destination address (or prefix) and protocol.
func egressMatches(r storedRule) [][]expr.Any {
	var dsts []netip.Prefix
	if r.Host != "" {
		for _, a := range r.Resolved {
			dsts = append(dsts, netip.PrefixFrom(a, a.BitLen()))
		}
	} else {
		dsts = []netip.Prefix{r.Prefix}
	}
	protos := []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP}
	switch r.Proto {
	case "tcp":
		protos = []byte{unix.IPPROTO_TCP}
	case "udp":
		protos = []byte{unix.IPPROTO_UDP}
	}
	var out [][]expr.Any
	for _, d := range dsts {
		if !d.Addr().Is4() {
			continue // IPv6 is off in the service's namespace
		}
		for _, p := range protos {
			e := append(ipPrefix(16, d), l4proto(p)...)
			if r.Port != 0 {
				e = append(e, dport(r.Port)...)
			}
			out = append(out, e)
		}
	}
	return out
}

func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

func nfproto4() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// ipAddr matches the IPv4 source (offset 12) or destination (offset 16) address.
func ipAddr(offset uint32, a netip.Addr) []expr.Any {
	return ipPrefix(offset, netip.PrefixFrom(a, 32))
}

func ipPrefix(offset uint32, p netip.Prefix) []expr.Any {
	e := nfproto4()
	if p.Bits() == 0 {
		return e
	}
	e = append(e, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4})
	a := p.Masked().Addr().As4()
	if p.Bits() < 32 {
		mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-p.Bits()))
		e = append(e, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)})
	}
	return append(e, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]})
}

func l4proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

func dport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}
