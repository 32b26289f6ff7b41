package network

import (
	"net"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// memberMAC is the hardware address of a member's eth0, derived from its
// leased address so that the rules know it without asking: locally
// administered (02), "sr", then the address's last three bytes, which are
// unique within a bridge's /24.
func memberMAC(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x02, 's', 'r', b[1], b[2], b[3]}
}

// spoofRules fill a member's chain of the bridge-family table (the skeleton's members chain
// jumps to it for frames from its bridge port, by the ports map: nft_linux.go), which stops a
// member from speaking as another: only frames from its own MAC, ARP that states its own MAC and
// address, IPv4 from its own address, and nothing else (IPv6, router advertisements included, is
// off inside). A member holding NET_RAW can still send any frame; these rules drop it before the
// bridge floods or delivers it, so neighbours' ARP caches and the peers' view of who sent what
// stay true. Without br_netfilter the ip table never sees frames between members of one
// bridge: this one does.
func spoofRules(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain, l lease) {
	rule := func(e ...expr.Any) { c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: e}) }
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	mac := memberMAC(l.Address)
	addr := l.Address.As4()
	rule(cat(payloadNeq(expr.PayloadBaseLLHeader, 6, mac), drop)...)
	rule(cat(etherType(unix.ETH_P_ARP), payloadNeq(expr.PayloadBaseNetworkHeader, 8, mac), drop)...)
	rule(cat(etherType(unix.ETH_P_ARP), payloadNeq(expr.PayloadBaseNetworkHeader, 14, addr[:]), drop)...)
	rule(cat(etherType(unix.ETH_P_IP), payloadNeq(expr.PayloadBaseNetworkHeader, 12, addr[:]), drop)...)
	rule(cat(notEtherTypes(unix.ETH_P_IP, unix.ETH_P_ARP), drop)...)
}

func cat(parts ...any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		switch v := p.(type) {
		case []expr.Any:
			out = append(out, v...)
		case expr.Any:
			out = append(out, v)
		}
	}
	return out
}

// payloadNeq matches when the bytes at offset of base differ from want.
func payloadNeq(base expr.PayloadBase, offset uint32, want []byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: base, Offset: offset, Len: uint32(len(want))},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: append([]byte(nil), want...)},
	}
}

func etherType(t uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(t)},
	}
}

func notEtherTypes(types ...uint16) []expr.Any {
	e := []expr.Any{&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}}
	for _, t := range types {
		e = append(e, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.BigEndian.PutUint16(t)})
	}
	return e
}
