package network

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The firewall is per service (issue 19: 50 starts on one bridge waited for each other's
// rewrites of a whole table, 20-60 ms each at 50 members, under a lock of its own). The tables'
// base chains hold a fixed skeleton that names no bridge and no service: every decision about a
// bridge or a member is a lookup in a set or a verdict map, so a member's attach adds its own
// chains and map elements in one batch of its own, and its detach deletes them by name, without
// reading the table, without rule handles and without waiting for another member's write (the
// kernel runs batches one at a time; a member's is three chains, a dozen rules, a few elements).
//
//	ip T    forward:     ct established,related accept
//	                     iifname . oifname @intra accept           (members of one bridge)
//	                     iifname . ip saddr vmap @members_fwd      (jump egress-VETH, whose first
//	                                                                rules log and drop what goes
//	                                                                to another bridge)
//	                     oifname @bridges drop                     (nothing new enters a bridge)
//	                     iifname @bridges drop                     (a forged source)
//	        input:       iifname @bridges ct established,related accept
//	                     iifname . ip daddr . l4proto . th dport @dns accept   (the gateway's DNS)
//	                     iifname . ip saddr vmap @members_in       (jump host-VETH, which logs
//	                                                                what it does not accept)
//	                     iifname @bridges drop
//	        prerouting:  iifname @bridges socket transparent 1 meta mark set M (transparent_linux.go)
//	        postrouting: oifname @bridges accept; ip saddr & 255.255.255.0 @subnets masquerade
//	ip6 T   forward:     iifname @bridges drop; oifname @bridges drop
//	        input:       iifname @bridges drop
//	bridge T members:    iifname vmap @ports                       (jump m-VETH: spoof_linux.go)
//
// The stateful rules are in an ip table, not an inet one (until December 2026 they were): the
// first rule with a ct expression or masquerade in a network namespace registers conntrack's
// hooks there and walks the whole conntrack table once per family (nf_ct_netns_get, for the TCP
// window fix-up), 3.4 ms on the development VM per family, and a lone bridge start pays it (see
// docs/networking.md, Where a bridge start's time goes). IPv6 is off in every service and on
// every bridge; the ip6 table drops it on the bridges all the same, with no conntrack: nothing of
// IPv6 was ever let through (the inet table's drops matched it, and only IPv4 had accepts).
//
// A bridge's elements (@bridges in both tables, @intra, @dns, @subnets) are added by each member's batch ("add"
// of an element that exists with the same data is no error) and deleted under the bridge's lock
// by its last member, before its subnet is free, so a joiner, whose lease is claimed under that
// lock (shared), never loses them. A member's stop deletes its map elements and its chains (named
// after its host veth, unique to each start) in one batch while it still holds its lease, so the
// next holder of its address never meets them; a lease lost otherwise leaves elements the kernel
// refuses the next holder's batch for (it retries, then deletes them, see connect), and a late
// deletion of them applies only while its own chains are there (runOwnOps). The tables
// themselves are made by the first member that finds them missing and deleted, under the root's
// lock, with the last bridge. A dead owner's objects are deleted by reclaim, by name: every name
// and key derives from its lease.
const (
	setBridges = "bridges"     // ifname: the bridges' interfaces (a routed one's: its veth)
	setIPv6    = "bridges6"    // (ip6 table) ifname: the same, in the table that drops IPv6 (its name there is "bridges")
	setIntra   = "intra"       // ifname . ifname: a bridge to itself
	setDNS     = "dns"         // ifname . ipv4_addr . inet_proto . inet_service: a gateway's resolver
	setSubnets = "subnets"     // ipv4_addr: a bridge's /24, its network address
	mapForward = "members_fwd" // ifname . ipv4_addr : verdict: a member's egress chain
	mapInput   = "members_in"  // ifname . ipv4_addr : verdict: a member's chain of host addresses
	mapPorts   = "ports"       // (bridge table) ifname : verdict: a member port's anti-spoofing chain
)

// Concatenations load into the 4-byte registers, from NFT_REG32_00 on.
const (
	reg32 = 8  // NFT_REG32_00
	regV  = 0  // NFT_REG_VERDICT: a lookup into a verdict map
	ifLen = 16 // IFNAMSIZ: an interface name's register width
)

// fw is one state root's firewall objects, as a batch names them.
type fw struct {
	ip, ip6, br *nftables.Table
	sets        map[string]*nftables.Set
}

// lookup matches register reg against set: by its name, or in the skeleton's own batch by its ID.
func (f fw) lookup(reg uint32, set string) *expr.Lookup {
	return &expr.Lookup{SourceRegister: reg, SetName: f.sets[set].Name, SetID: f.sets[set].ID}
}

func mustConcat(types ...nftables.SetDatatype) nftables.SetDatatype {
	t, err := nftables.ConcatSetType(types...)
	if err != nil {
		panic(err) // fixed types: a programming error
	}
	return t
}

func (s stateRoot) fw() fw {
	ip := &nftables.Table{Name: s.table(), Family: nftables.TableFamilyIPv4}
	ip6 := &nftables.Table{Name: s.table(), Family: nftables.TableFamilyIPv6}
	br := &nftables.Table{Name: s.table(), Family: nftables.TableFamilyBridge}
	ifAddr := mustConcat(nftables.TypeIFName, nftables.TypeIPAddr)
	return fw{ip: ip, ip6: ip6, br: br, sets: map[string]*nftables.Set{
		// Host byte order, as nft(8) stores an ifname: only so that it lists them right.
		setBridges: {Table: ip, Name: setBridges, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian},
		setIPv6:    {Table: ip6, Name: setBridges, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian},
		setIntra:   {Table: ip, Name: setIntra, KeyType: mustConcat(nftables.TypeIFName, nftables.TypeIFName), Concatenation: true},
		setDNS: {Table: ip, Name: setDNS, Concatenation: true,
			KeyType: mustConcat(nftables.TypeIFName, nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)},
		setSubnets: {Table: ip, Name: setSubnets, KeyType: nftables.TypeIPAddr},
		mapForward: {Table: ip, Name: mapForward, KeyType: ifAddr, Concatenation: true, IsMap: true, DataType: nftables.TypeVerdict},
		mapInput:   {Table: ip, Name: mapInput, KeyType: ifAddr, Concatenation: true, IsMap: true, DataType: nftables.TypeVerdict},
		mapPorts: {Table: br, Name: mapPorts, KeyType: nftables.TypeIFName, KeyByteOrder: binaryutil.NativeEndian,
			IsMap: true, DataType: nftables.TypeVerdict},
	}}
}

// nftConn opens a netfilter socket whose close the caller may leave for later (see release in
// ensureTables' callers): closing one waits until the kernel has freed what earlier transactions
// deleted (the NETLINK_URELEASE notifier flushes nf_tables' destroy work, an RCU grace period:
// 8-16 ms here).
func nftConn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.AsLasting(),
		// The kernel answers each rule of a batch: a skeleton's and a member's are small,
		// but a reclaim of many dead members is not.
		nftables.WithSockOptions(func(c *netlink.Conn) error { return c.SetReadBuffer(8 << 20) }))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// ensureTables makes the root's tables with their skeleton unless they are there, and says whether
// the ip table has its prerouting chain (a kernel without nft's socket expression,
// CONFIG_NFT_SOCKET, refuses it: isolation stays, only the client's address is lost, which
// ensureTransparent is told). Any member may make them, under no lock: the ip table is
// created exclusively, so of two at once one batch applies and the other finds it made. They are
// deleted only with the last bridge, under the root's lock, and the caller holds a lease, so they
// stay once made. open gives a socket, which the caller closes: a new one after each refused
// batch, whose answers may still be queued on the last.
//
// member queues the caller's own objects (addMember). Where the tables are missing (a lone
// start, every time) they go into the skeleton's batch: one commit and one round trip less than
// two batches. added says they did; if that batch is refused (another member made the tables
// first, a kernel without the socket expression), the skeleton is made alone, as before, and the
// caller adds its objects itself.
func ensureTables(open func() (*nftables.Conn, error), root stateRoot, member func(*nftables.Conn) error) (added, prerouting bool, err error) {
	f := root.fw()
	c, err := open()
	if err != nil {
		return false, false, err
	}
	have, prerouting, err := readTables(c, f)
	if err != nil || have {
		return false, prerouting, err
	}
	left, err := leftTables(c, f)
	if err != nil {
		return false, false, err
	}
	mark, _ := root.transparent()
	if member != nil {
		if buildSkeleton(c, f, mark, left, member) == nil {
			return true, true, nil
		}
		if c, err = open(); err != nil {
			return false, false, err
		}
		if have, prerouting, err := readTables(c, f); err != nil || have {
			return false, prerouting, err
		}
	}
	var errs []error
	for _, m := range []uint32{mark, 0} {
		err := buildSkeleton(c, f, m, left, nil)
		if err == nil {
			return false, m != 0, nil
		}
		errs = append(errs, err)
		if c, err = open(); err != nil {
			return false, false, err
		}
		// Another member's batch may have made them meanwhile.
		if have, prerouting, err := readTables(c, f); err != nil || have {
			return false, prerouting, err
		}
	}
	return false, false, fmt.Errorf("nftables tables ip, ip6 and bridge %s: %w", root.table(), errors.Join(errs...))
}

// layoutChain is an empty chain that marks the skeleton's layout (3: the ip and ip6 tables; 4: a
// member's packets meet its egress chain before the drop of what enters a bridge, so that the
// chain logs a connection to another bridge; a member chain of layout 3 beside that skeleton
// would let egress "all" into another bridge, so the layouts never mix: see readTables).
const layoutChain = "layout-4"

// readTables says whether the ip table exists with its skeleton, and with its prerouting chain.
func readTables(c *nftables.Conn, f fw) (have, prerouting bool, err error) {
	chains, err := c.ListChainsOfTableFamily(f.ip.Family)
	if err != nil {
		return false, false, fmt.Errorf("nftables: listing chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != f.ip.Name {
			continue
		}
		switch {
		case ch.Name == layoutChain:
			have = true
		case ch.Name == preroutingChain:
			prerouting = true
		case strings.HasPrefix(ch.Name, "layout-"):
			return false, false, fmt.Errorf("nftables table ip %s has the %s rules of another version of safe-run, which this one does not mix with its own (%s): stop the services on its bridges (safe-run ps), then start again; if none runs, `safe-run network-cleanup` on its state directory deletes the table",
				f.ip.Name, ch.Name, layoutChain)
		}
	}
	return have, prerouting, nil
}

// leftTables finds, where the ip table is missing, the root's ip6 and bridge tables (left by a
// crash between batches of an older safe-run, or by hand), which the skeleton's batch replaces,
// and refuses to go on beside an inet table of the root's name: an older safe-run's, whose rules
// would drop this one's members on a bridge they share.
func leftTables(c *nftables.Conn, f fw) ([]*nftables.Table, error) {
	tabs, err := c.ListTables()
	if err != nil {
		return nil, fmt.Errorf("nftables: listing tables: %w", err)
	}
	var left []*nftables.Table
	for _, t := range tabs {
		if t.Name != f.ip.Name {
			continue
		}
		switch t.Family {
		case nftables.TableFamilyINet:
			return nil, fmt.Errorf("nftables table inet %s was written by an older safe-run: stop the services on its bridges, then run `safe-run network-cleanup` on its state directory, which deletes it", t.Name)
		case f.ip6.Family, f.br.Family:
			left = append(left, t)
		}
	}
	return left, nil
}

// buildSkeleton makes the three tables in one batch, replacing left (see leftTables), with what
// member queues, if not nil; mark 0 leaves out the prerouting chain.
func buildSkeleton(c *nftables.Conn, f fw, mark uint32, left []*nftables.Table, member func(*nftables.Conn) error) error {
	for _, t := range left {
		c.DelTable(t)
	}
	c.CreateTable(f.ip) // NLM_F_EXCL: of two members at once, one makes them
	c.AddTable(f.ip6)
	c.AddTable(f.br)
	// Each set's ID is given here, unique in the batch: the library's own allocator is a
	// package counter without a lock, which two goroutines' skeletons would race on (two
	// Attaches in one process: tests).
	id := uint32(0)
	for _, s := range f.sets {
		id++
		s.ID = id
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
	}
	accept := &expr.Verdict{Kind: expr.VerdictAccept}
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	t := f.ip
	rule := func(ch *nftables.Chain, e ...expr.Any) {
		c.AddRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: e})
	}
	lookup := f.lookup
	vmap := func(reg uint32, set string) *expr.Lookup {
		l := lookup(reg, set)
		l.DestRegister, l.IsDestRegSet = regV, true
		return l
	}
	meta := func(k expr.MetaKey, reg uint32) *expr.Meta { return &expr.Meta{Key: k, Register: reg} }
	saddr := func(reg uint32) *expr.Payload {
		return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
	}
	onBridge := []expr.Any{meta(expr.MetaKeyIIFNAME, 1), lookup(1, setBridges)}

	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	rule(fwd, append(ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept)...)
	// Members of one bridge reach each other (seen here only with br_netfilter loaded).
	rule(fwd, meta(expr.MetaKeyIIFNAME, reg32), meta(expr.MetaKeyOIFNAME, reg32+ifLen/4), lookup(reg32, setIntra), accept)
	// A member's packets go to its egress chain, which drops (and logs) first what goes to
	// another bridge (egressRules).
	rule(fwd, cat(meta(expr.MetaKeyIIFNAME, reg32), saddr(reg32+ifLen/4), vmap(reg32, mapForward))...)
	// Nothing else new enters a bridge: not from the LAN (published ports are sockets on the
	// host, not forwarding), not from a forged member.
	rule(fwd, meta(expr.MetaKeyOIFNAME, 1), lookup(1, setBridges), drop)
	// A source address no lease holds is a forgery.
	rule(fwd, cat(onBridge, drop)...)

	// input: from a bridge the host answers DNS on the gateway, and established traffic (published
	// ports' replies); its own addresses and loopback services stay closed, but for the host
	// addresses a member's egress names (its chain host-VETH).
	in := c.AddChain(&nftables.Chain{Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	rule(in, cat(onBridge, ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept)...)
	rule(in, cat(meta(expr.MetaKeyIIFNAME, reg32),
		&expr.Payload{DestRegister: reg32 + 4, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		meta(expr.MetaKeyL4PROTO, reg32+5),
		&expr.Payload{DestRegister: reg32 + 6, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		lookup(reg32, setDNS), accept)...)
	rule(in, cat(meta(expr.MetaKeyIIFNAME, reg32), saddr(reg32+ifLen/4), vmap(reg32, mapInput))...)
	rule(in, cat(onBridge, drop)...)

	// prerouting: the service's replies to a forwarder that dialled from its client's address go
	// to that forwarder (transparent_linux.go).
	if mark != 0 {
		pre := c.AddChain(&nftables.Chain{Name: preroutingChain, Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityMangle})
		rule(pre, cat(onBridge, transparentMark(mark))...)
	}

	// postrouting: what egress lets out leaves with the host's address.
	nat := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	rule(nat, meta(expr.MetaKeyOIFNAME, 1), lookup(1, setBridges), accept)
	rule(nat, cat(saddr(1),
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 255, 255, 0}, Xor: make([]byte, 4)},
		lookup(1, setSubnets), &expr.Masq{})...)

	// IPv6: none into a bridge, none out of one, none from one to the host.
	fwd6 := c.AddChain(&nftables.Chain{Name: "forward", Table: f.ip6, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter})
	rule(fwd6, meta(expr.MetaKeyIIFNAME, 1), lookup(1, setIPv6), drop)
	rule(fwd6, meta(expr.MetaKeyOIFNAME, 1), lookup(1, setIPv6), drop)
	in6 := c.AddChain(&nftables.Chain{Name: "input", Table: f.ip6, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter})
	rule(in6, meta(expr.MetaKeyIIFNAME, 1), lookup(1, setIPv6), drop)

	c.AddChain(&nftables.Chain{Name: layoutChain, Table: t})
	members := c.AddChain(&nftables.Chain{Name: "members", Table: f.br, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter})
	rule(members, meta(expr.MetaKeyIIFNAME, 1), vmap(1, mapPorts))
	if member != nil {
		if err := member(c); err != nil {
			return err
		}
	}
	return c.Flush()
}

// Names of a member's chains: its host veth's name is unique to its start, so a chain of a lease
// on its way out is never taken for the next lease of the same address.
func egressChain(l lease) string { return "egress-" + l.HostVeth }
func hostChain(l lease) string   { return "host-" + l.HostVeth }
func portChain(l lease) string   { return "m-" + l.HostVeth }

func ifKey(name string) []byte {
	b := make([]byte, ifLen)
	copy(b, name)
	return b
}

func memberKey(b *bridgeState, l lease) []byte {
	a := l.Address.As4()
	return append(ifKey(b.Ifname), a[:]...)
}

// bridgeElems are the elements that stand for bridge b in the skeleton's sets.
func bridgeElems(b *bridgeState) map[string][]nftables.SetElement {
	gw := b.Gateway.As4()
	dns := func(proto byte) nftables.SetElement {
		return nftables.SetElement{Key: cat4(ifKey(b.Ifname), gw[:], []byte{proto, 0, 0, 0}, []byte{0, 53, 0, 0})}
	}
	net := b.Subnet.Masked().Addr().As4()
	return map[string][]nftables.SetElement{
		setBridges: {{Key: ifKey(b.Ifname)}},
		setIPv6:    {{Key: ifKey(b.Ifname)}},
		setIntra:   {{Key: cat4(ifKey(b.Ifname), ifKey(b.Ifname))}},
		setDNS:     {dns(unix.IPPROTO_UDP), dns(unix.IPPROTO_TCP)},
		setSubnets: {{Key: net[:]}},
	}
}

func cat4(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// addMember queues on c the batch of one member's attach: its bridge's elements (there already
// if another member put them there), its chains, and the map elements that jump to them.
func addMember(c *nftables.Conn, f fw, b *bridgeState, l lease) error {
	for name, elems := range bridgeElems(b) {
		if err := c.SetAddElements(f.sets[name], elems); err != nil {
			return err
		}
	}
	eg := c.AddChain(&nftables.Chain{Name: egressChain(l), Table: f.ip})
	egressRules(c, f, eg, l)
	host := c.AddChain(&nftables.Chain{Name: hostChain(l), Table: f.ip})
	hostRules(c, f.ip, host, l)
	port := c.AddChain(&nftables.Chain{Name: portChain(l), Table: f.br})
	spoofRules(c, f.br, port, l)
	jump := func(ch string) *expr.Verdict { return &expr.Verdict{Kind: expr.VerdictJump, Chain: ch} }
	return errors.Join(
		c.SetAddElements(f.sets[mapForward], []nftables.SetElement{{Key: memberKey(b, l), VerdictData: jump(eg.Name)}}),
		c.SetAddElements(f.sets[mapInput], []nftables.SetElement{{Key: memberKey(b, l), VerdictData: jump(host.Name)}}),
		c.SetAddElements(f.sets[mapPorts], []nftables.SetElement{{Key: ifKey(l.HostVeth), VerdictData: jump(port.Name)}}),
	)
}

// nftOp is one deletion, queued on a connection.
type nftOp func(c *nftables.Conn) error

// memberElemOps delete a member's map elements: what sends its packets to its chains.
func memberElemOps(f fw, b *bridgeState, l lease) []nftOp {
	return append(addrElemOps(f, b, l), delElem(f, mapPorts, ifKey(l.HostVeth)))
}

// addrElemOps delete the map elements keyed by a member's address, which the next lease of that
// address will have too.
func addrElemOps(f fw, b *bridgeState, l lease) []nftOp {
	return []nftOp{delElem(f, mapForward, memberKey(b, l)), delElem(f, mapInput, memberKey(b, l))}
}

func delElem(f fw, set string, key []byte) nftOp {
	return func(c *nftables.Conn) error {
		return c.SetDeleteElements(f.sets[set], []nftables.SetElement{{Key: key}})
	}
}

// memberChainOps delete a member's chains, once no map element jumps to them.
func memberChainOps(f fw, l lease) []nftOp {
	del := func(t *nftables.Table, name string) nftOp {
		return func(c *nftables.Conn) error { c.DelChain(&nftables.Chain{Name: name, Table: t}); return nil }
	}
	return []nftOp{del(f.ip, egressChain(l)), del(f.ip, hostChain(l)), del(f.br, portChain(l))}
}

// bridgeElemOps delete a bridge's elements: its last member's leaving.
func bridgeElemOps(f fw, b *bridgeState) []nftOp {
	var ops []nftOp
	for name, elems := range bridgeElems(b) {
		ops = append(ops, func(c *nftables.Conn) error { return c.SetDeleteElements(f.sets[name], elems) })
	}
	return ops
}

// tableOps delete the tables: the last bridge's leaving.
func tableOps(f fw) []nftOp {
	var ops []nftOp
	for _, t := range []*nftables.Table{f.ip, f.ip6, f.br} {
		ops = append(ops, func(c *nftables.Conn) error { c.DelTable(t); return nil })
	}
	return ops
}

// runOps applies ops in one batch, or, when the kernel refuses it (an object already gone: an
// Attach that failed before its batch, a dead owner's, a chain a Cleanup swept), one batch each,
// where what is not there is no error. release closes the sockets (see nftConn).
func runOps(ops []nftOp) (release func(), err error) {
	var conns []*nftables.Conn
	release = func() {
		for _, c := range conns {
			_ = c.CloseLasting()
		}
	}
	if len(ops) == 0 {
		return release, nil
	}
	batch := func(ops []nftOp) error {
		c, err := nftConn()
		if err != nil {
			return err
		}
		conns = append(conns, c)
		for _, op := range ops {
			if err := op(c); err != nil {
				return err
			}
		}
		return c.Flush()
	}
	if batch(ops) == nil {
		return release, nil
	}
	var errs []error
	for _, op := range ops {
		if err := batch([]nftOp{op}); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return release, fmt.Errorf("nftables: %w", err)
	}
	return release, nil
}

// closes holds the nftables sockets of one teardown's batches, to be closed after its last batch
// (see nftConn): a socket's close flushes what earlier batches deleted while it holds nf_tables'
// commit mutex (nft_rcv_nl_event), so a batch committed after another batch's close waits out
// that grace period (5-8 ms each at a lone bridge service's exit here, three batches in turn:
// the member's objects, its bridge's elements, the tables). A nil *closes closes each socket at
// once, in the background.
type closes struct{ fns []func() }

func (c *closes) add(release func()) {
	if c == nil {
		go release()
		return
	}
	c.fns = append(c.fns, release)
}

// later closes them all in the background: nothing waits for the kernel to free what the
// batches deleted but the process's exit, beside the rest of its teardown.
func (c *closes) later() {
	fns := c.fns
	go func() {
		for _, f := range fns {
			f()
		}
	}()
}

// runOwnOps runs a detaching member's deletions (ops: its map elements, or
// none if its batch never applied, and its chains) as one batch, which applies only while its
// chains are there, and then only to its own elements (see detachTimed); or, when the kernel
// refuses it, its port element and chains one by one, if its egress chain is still there (else
// the tables were deleted, and perhaps made again). Never then the elements keyed by its address:
// the next lease of the address may have deleted them (connect) and added its own.
func runOwnOps(f fw, l lease, ops []nftOp) (release func(), err error) {
	c, err := nftConn()
	if err != nil {
		return func() {}, err
	}
	release = func() { _ = c.CloseLasting() }
	for _, op := range ops {
		if err := op(c); err != nil {
			return release, err
		}
	}
	if c.Flush() == nil {
		return release, nil
	}
	if ch, err := c.ListChain(f.ip, egressChain(l)); err != nil || ch == nil {
		return release, nil
	}
	r2, err := runOps(append([]nftOp{delElem(f, mapPorts, ifKey(l.HostVeth))}, memberChainOps(f, l)...))
	return func() { release(); r2() }, err
}

// sweepOps delete the member chains of the root's tables that no lease in bridges names, with
// the map elements that jump to them: what a lease lost otherwise than by its stop or reclaim
// left (a safe-run from before lease files, killed between dropping its lease and deleting its
// chains). The caller holds the root's lock, exclusive, so every claimed lease is in bridges.
func sweepOps(f fw, bridges map[string]*bridgeState) ([]nftOp, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	defer func() { _ = c.CloseLasting() }()
	// Map elements by key (the library does not decode their verdicts): a member's key is live
	// while its lease is, as its elements go before its lease does.
	veths, keys := map[string]bool{}, map[string]bool{}
	for _, b := range bridges {
		for _, l := range b.Leases {
			veths[l.HostVeth] = true
			keys[string(memberKey(b, l))] = true
			keys[string(ifKey(l.HostVeth))] = true
		}
	}
	stale := func(chain string) bool {
		for _, p := range []string{"egress-", "host-", "m-"} {
			if v, ok := strings.CutPrefix(chain, p); ok && vethName(v) {
				return !veths[v]
			}
		}
		return false
	}
	var elems, chains []nftOp
	for _, m := range []string{mapForward, mapInput, mapPorts} {
		s := f.sets[m]
		got, err := c.GetSetElements(s)
		if err != nil {
			continue // no table: nothing to sweep
		}
		for _, e := range got {
			if !keys[string(e.Key)] {
				elems = append(elems, func(c *nftables.Conn) error { return c.SetDeleteElements(s, []nftables.SetElement{{Key: e.Key}}) })
			}
		}
	}
	for _, t := range []*nftables.Table{f.ip, f.br} {
		all, err := c.ListChainsOfTableFamily(t.Family)
		if err != nil {
			return nil, fmt.Errorf("nftables: listing chains: %w", err)
		}
		for _, ch := range all {
			if ch.Table != nil && ch.Table.Name == t.Name && stale(ch.Name) {
				chains = append(chains, func(c *nftables.Conn) error { c.DelChain(&nftables.Chain{Name: ch.Name, Table: t}); return nil })
			}
		}
	}
	return append(elems, chains...), nil
}

// hostRules fills a member's chain of host addresses: an egress entry that names a host address
// opens it (a database on the host's LAN address, say); an entry for every address (0.0.0.0/0)
// does not: it means "the internet". What it does not accept and is the host's alone (not a
// broadcast or multicast, which a service's kernel sends unasked) is logged; all it does not
// accept goes back to input, which drops it.
func hostRules(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain, l lease) {
	for _, r := range l.Egress.Rules {
		if r.Host == "" && r.Prefix.Bits() == 0 {
			continue
		}
		for _, e := range egressMatches(r) {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(e, &expr.Verdict{Kind: expr.VerdictAccept})})
		}
	}
	toHost := []expr.Any{&expr.Meta{Key: expr.MetaKeyPKTTYPE, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.PACKET_HOST}}}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(toHost, logDenial(l)...)})
}

// egressRules fills a service's egress chain: what goes to another bridge is logged and dropped,
// whatever its egress says; what its egress allows is accepted; the rest is logged and dropped.
func egressRules(c *nftables.Conn, f fw, ch *nftables.Chain, l lease) {
	rule := func(e ...expr.Any) { c.AddRule(&nftables.Rule{Table: f.ip, Chain: ch, Exprs: e}) }
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	toBridge := []expr.Any{&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1}, f.lookup(1, setBridges)}
	rule(append(toBridge, logDenial(l)...)...)
	rule(append(toBridge, drop)...)
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
	rule(logDenial(l)...)
	rule(drop)
}

// logDenial logs a packet to the member's NFLOG group, which its supervisor reports as
// `NAME: egress denied ADDR:PORT/PROTO` (nflog_linux.go), rate-limited here too: past the
// limit the rule does not match, so a rule of its own must drop the packet.
func logDenial(l lease) []expr.Any {
	return []expr.Any{&expr.Limit{Type: expr.LimitTypePkts, Rate: 10, Unit: expr.LimitTimeSecond, Burst: 20},
		&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_SNAPLEN, Group: l.LogGroup, Snaplen: 64}}
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

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

func ipPrefix(offset uint32, p netip.Prefix) []expr.Any {
	// In the ip table every packet is IPv4: no `meta nfproto` check (nft(8) cannot even list
	// one there: it aborts on the payload that follows).
	var e []expr.Any
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
