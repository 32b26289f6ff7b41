package network

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"syscall"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The client's address at the service: the forwarders dial the service
// from the client's own address (IP_TRANSPARENT, see dialService), so the
// service's replies are addressed to the client, not to the host. The host
// must deliver them to the forwarder instead of routing them on:
//
//   - in prerouting of `ip safe_run`, `iifname BRIDGE socket transparent
//     1 meta mark set M`: only packets that belong to a transparent socket
//     of this host, arriving from one of safe-run's bridges, are marked;
//   - the policy route `ip rule add priority P fwmark M lookup T` with
//     `ip route add local 0.0.0.0/0 dev lo table T`: a marked packet is
//     for this host, whatever its destination address.
//
// The default state root uses M = T = 0x53520000 ("SR", table 1397882880)
// and P = 100: after the local table's rule (0), before the usual policy
// rules of VPNs (Tailscale's 5210 and on, wg-quick's 32764 and 32765) that
// would route the marked reply elsewhere. Another state root (the tests')
// adds a 16-bit hash of its path to M and T, so that two roots never
// remove each other's rule. A mark of exactly M set by another program
// would send its packets to the host's sockets; M matches no bit pattern
// of the usual users of marks (kube-proxy's 0x4000/0x8000, Tailscale's
// 0xff0000 byte, WireGuard's 0xca6c).
//
// Both are made by every attach once its table is written (ensureTransparent,
// under no lock: a second finds them made) and removed with the last bridge,
// under the root's lock (dropTablesLocked, so Cleanup removes them after a
// crash too): while a lease exists, nothing removes them. The replies are conntrack-established, so the input
// chain's isolation (from a bridge only DNS to the gateway and established
// traffic) still holds; nothing is forwarded, so egress does not see them.
const (
	preroutingChain     = "prerouting"
	transparentBase     = 0x5352_0000
	transparentPriority = 100
)

// transparent returns the root's mark and routing table.
func (s stateRoot) transparent() (mark uint32, table int) {
	if filepath.Clean(s.dir) == DefaultStateDir {
		return transparentBase, transparentBase
	}
	h := sha256.Sum256([]byte("transparent\x00" + filepath.Clean(s.dir)))
	v := transparentBase | max(uint32(binary.BigEndian.Uint16(h[:2])), 1) // never the default root's
	return v, int(v)
}

func (s stateRoot) transparentRule() *netlink.Rule {
	mark, table := s.transparent()
	r := netlink.NewRule()
	r.Family = unix.AF_INET
	r.Priority = transparentPriority
	r.Mark = mark
	mask := ^uint32(0)
	r.Mask = &mask
	r.Table = table
	return r
}

func (s stateRoot) transparentRoute() *netlink.Route {
	_, table := s.transparent()
	return &netlink.Route{
		Table: table, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST, LinkIndex: 1, // lo
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
	}
}

// ensureTransparent makes the root's rule and route unless they exist;
// prerouting says whether the ip table has the chain (ensureTables) that marks the
// replies. A rule for M or T that is not ours, or a route in T other than
// ours, is another program's: it is left alone and reported, and the
// caller dials from the gateway instead.
func ensureTransparent(root stateRoot, prerouting bool) error {
	mark, table := root.transparent()
	if !prerouting {
		return fmt.Errorf("the kernel took no nftables rule with `socket transparent` (CONFIG_NFT_SOCKET) in table ip %s", root.table())
	}
	rules, err := netlink.RuleList(unix.AF_INET)
	if err != nil {
		return fmt.Errorf("listing ip rules: %w", err)
	}
	want := root.transparentRule()
	haveRule := false
	for _, r := range rules {
		switch {
		case isOurRule(r, want):
			haveRule = true
		case r.Table == table || (r.Mark == mark && r.Mark != 0):
			return fmt.Errorf("ip rule %d (fwmark %#x, table %d) is another program's; safe-run needs fwmark %#x and table %d for the client's address (remove that rule, or accept that services see the gateway as their client)", r.Priority, r.Mark, r.Table, mark, table)
		}
	}
	routes, err := netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("listing routing table %d: %w", table, err)
	}
	haveRoute := false
	for _, r := range routes {
		if !isOurRoute(r, table) {
			return fmt.Errorf("routing table %d holds another program's route %s; safe-run needs the table for the client's address (empty it, or accept that services see the gateway as their client)", table, r)
		}
		haveRoute = true
	}
	if !haveRoute {
		if err := netlink.RouteAdd(root.transparentRoute()); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("ip route add local 0.0.0.0/0 dev lo table %d: %w", table, err)
		}
	}
	if !haveRule {
		if err := netlink.RuleAdd(want); err != nil && !errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("ip rule add priority %d fwmark %#x lookup %d: %w", transparentPriority, mark, table, err)
		}
	}
	return nil
}

// removeTransparent removes the root's rule and route, if they are there.
func removeTransparent(root stateRoot) error {
	_, table := root.transparent()
	var errs []error
	rules, err := netlink.RuleList(unix.AF_INET)
	if err != nil {
		return fmt.Errorf("listing ip rules: %w", err)
	}
	want := root.transparentRule()
	for _, r := range rules {
		if isOurRule(r, want) {
			if err := netlink.RuleDel(want); err != nil && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("ip rule del fwmark %#x lookup %d: %w", want.Mark, table, err))
			}
		}
	}
	routes, err := netlink.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("listing routing table %d: %w", table, err))...)
	}
	for _, r := range routes {
		if isOurRoute(r, table) {
			if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("ip route del local 0.0.0.0/0 table %d: %w", table, err))
			}
		}
	}
	return errors.Join(errs...)
}

func isOurRule(r netlink.Rule, want *netlink.Rule) bool {
	return r.Priority == want.Priority && r.Table == want.Table && r.Mark == want.Mark &&
		(r.Mask == nil || *r.Mask == ^uint32(0)) && r.Src == nil && r.Dst == nil && r.IifName == "" && r.OifName == ""
}

func isOurRoute(r netlink.Route, table int) bool {
	return r.Table == table && r.Type == unix.RTN_LOCAL && r.LinkIndex == 1 &&
		(r.Dst == nil || (r.Dst.IP.IsUnspecified() && bits(r.Dst) == 0))
}

func bits(n *net.IPNet) int {
	ones, _ := n.Mask.Size()
	return ones
}

// transparentMark is prerouting's rule after its match of a bridge: replies to a transparent
// socket of this host are marked for the policy route (see transparentBase).
func transparentMark(mark uint32) []expr.Any {
	return []expr.Any{
		&expr.Socket{Key: expr.SocketKeyTransparent, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1}},
		&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(mark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}
