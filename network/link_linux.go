package network

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ensureBridge makes the bridge interface with the gateway address, or checks the one there, and
// returns its index. Members call it under no lock, at once: every step is one that a second
// caller finds done (the interface, its MAC, its address, up). The bridge is deleted only under
// its lock when it has no lease, so it is not going away while a caller holds one.
func ensureBridge(b *bridgeState) (int, error) {
	link, err := netlink.LinkByName(b.Ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return 0, fmt.Errorf("bridge %s (%s): %w", b.Name, b.Ifname, err)
		}
		// Its MAC set, not inherited from its lowest port (see pinBridgeMAC).
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: b.Ifname, HardwareAddr: memberMAC(b.Gateway)}}
		switch err := netlink.LinkAdd(br); {
		case errors.Is(err, unix.EEXIST):
			// Another member made it first: join it.
			if link, err = netlink.LinkByName(b.Ifname); err != nil {
				return 0, fmt.Errorf("bridge %s (%s): %w", b.Name, b.Ifname, err)
			}
		case err != nil:
			return 0, fmt.Errorf("creating bridge %s (%s): %w", b.Name, b.Ifname, err)
		default:
			link = br // LinkAdd filled in its index
		}
	}
	if link.Type() != "bridge" {
		return 0, fmt.Errorf("bridge %s: interface %s exists and is a %s, not a bridge (remove it)", b.Name, b.Ifname, link.Type())
	}
	if err := pinBridgeMAC(link); err != nil {
		return 0, fmt.Errorf("bridge %s (%s): %w", b.Name, b.Ifname, err)
	}
	if err := hostSide(link, b); err != nil {
		return 0, fmt.Errorf("bridge %s (%s): %w", b.Name, b.Ifname, err)
	}
	return link.Attrs().Index, nil
}

// hostSide gives the host's end of a bridge, or of a routed veth, the gateway address, turns IPv6
// off on it and sets it up.
func hostSide(link netlink.Link, b *bridgeState) error {
	addr := &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(b.Gateway, b.Subnet.Bits()))}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("address %s: %w", b.Gateway, err)
	}
	// No IPv6 on the host side either: no link-local address, no neighbour discovery towards
	// members that have IPv6 off. A host without IPv6 has no such file, which is as good.
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+link.Attrs().Name+"/disable_ipv6", []byte("1"), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("disabling IPv6: %w", err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("up: %w", err)
	}
	return nil
}

// netAddrSet is the kernel's NET_ADDR_SET (include/linux/netdevice.h): the address was set
// explicitly, as /sys/class/net/IF/addr_assign_type shows.
const netAddrSet = "3"

// pinBridgeMAC sets the bridge's MAC address to the one it has, once. Until an address is set, a
// Linux bridge takes the lowest MAC of its ports (br_stp_recalculate_bridge_id) and changes it when
// that port leaves: every remaining member's ARP entry for the gateway then names a MAC nobody
// answers, and DNS and egress stop for them until the entry goes stale and is probed again
// (seconds to a minute). Docker and netavark pin it for the same reason. A new bridge's own
// address is random and locally administered, and is the one the first member will learn.
func pinBridgeMAC(link netlink.Link) error {
	t, err := os.ReadFile("/sys/class/net/" + link.Attrs().Name + "/addr_assign_type")
	if err == nil && strings.TrimSpace(string(t)) == netAddrSet {
		return nil
	}
	if err := netlink.LinkSetHardwareAddr(link, link.Attrs().HardwareAddr); err != nil {
		return fmt.Errorf("pinning its MAC address %s: %w", link.Attrs().HardwareAddr, err)
	}
	return nil
}

func deleteLink(name string) error {
	link, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("interface %s: %w", name, err)
	}
	// ENODEV: a veth whose namespace was just dropped goes away on its own, asynchronously,
	// between the lookup and the delete.
	if err := netlink.LinkDel(link); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("deleting interface %s: %w", name, err)
	}
	return nil
}

// connect makes the veth pair: hostVeth on the bridge whose index is master or, for a routed
// bridge of the service's own (master 0), with the gateway address itself; its peer in the
// namespace at nsPath as eth0 with the lease's address and a default route via the gateway.
func connect(b *bridgeState, l *lease, master int) error {
	ns, err := netns.GetFromPath(l.Netns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", l.Netns, err)
	}
	defer ns.Close()
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: l.HostVeth, MasterIndex: master},
		// Made straight in the namespace, under its final name: the container end never appears
		// on the host, and no rename is needed.
		PeerName: "eth0",
		// Known to the bridge table's rules, which drop frames from any other (spoof_linux.go).
		PeerHardwareAddr: memberMAC(l.Address),
		PeerNamespace:    netlink.NsFd(ns),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("creating veth %s: %w", l.HostVeth, err)
	}
	if master == 0 {
		// The pair has no carrier until eth0 is up below, so IPv6 is off before it could
		// configure anything.
		if err := hostSide(veth, b); err != nil {
			return fmt.Errorf("veth %s: %w", l.HostVeth, err)
		}
	} else if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("veth %s up: %w", l.HostVeth, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netns %s: %w", l.Netns, err)
	}
	defer h.Close()
	in, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("veth peer in %s: %w", l.Netns, err)
	}
	if err := h.AddrAdd(in, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(l.Address, b.Subnet.Bits()))}); err != nil {
		return fmt.Errorf("address %s in %s: %w", l.Address, l.Netns, err)
	}
	if err := h.LinkSetUp(in); err != nil {
		return fmt.Errorf("eth0 up in %s: %w", l.Netns, err)
	}
	gw := net.IP(b.Gateway.AsSlice())
	if err := h.RouteAdd(&netlink.Route{LinkIndex: in.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("default route via %s in %s: %w", b.Gateway, l.Netns, err)
	}
	ends := []linkEnd{{l.HostVeth, "veth " + l.HostVeth, netlink.LinkByName}, {"eth0", "eth0 in " + l.Netns, h.LinkByName}}
	if master != 0 {
		// A new bridge carries nothing until its first port is up, and the
		// kernel may take up to a second to notice (a bridge's carrier is
		// not an urgent link event).
		ends = append(ends, linkEnd{b.Ifname, "bridge " + b.Ifname, netlink.LinkByName})
	}
	return waitOperUp(ends)
}

// linkEnd is one interface waitOperUp waits for, found by get in its
// namespace.
type linkEnd struct {
	name, what string
	get        func(string) (netlink.Link, error)
}

// operUpTimeout bounds the wait for a new pair to carry traffic.
const operUpTimeout = 5 * time.Second

// waitOperUp waits until both ends of a new veth pair (and a new bridge)
// are operationally up. Until the kernel's link watcher has run for an end, that end
// transmits through a no-op queue that drops every packet: the first ARP
// request of a service's first connection is lost, and ARP asks again
// only a second later. The watcher runs in a shared work queue, late when
// namespaces are being torn down (a restart at once).
func waitOperUp(ends []linkEnd) error {
	deadline := time.Now().Add(operUpTimeout)
	for _, end := range ends {
		for {
			l, err := end.get(end.name)
			if err != nil {
				return fmt.Errorf("%s: %w", end.what, err)
			}
			if l.Attrs().OperState == netlink.OperUp {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s is %s, not up, after %v", end.what, l.Attrs().OperState, operUpTimeout)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// freeSubnet picks the first /24 of the pool that no bridge of this root uses and that overlaps no
// route of the host (a LAN, a VPN, another engine's bridge).
func freeSubnet(used []netip.Prefix) (netip.Prefix, error) {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: 0}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("listing host routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue // the default route overlaps everything and says nothing
		}
		ones, _ := r.Dst.Mask.Size()
		if a, ok := netip.AddrFromSlice(r.Dst.IP.To4()); ok && ones > 0 {
			used = append(used, netip.PrefixFrom(a, ones).Masked())
		}
	}
	base := pool.Addr().As4()
	for i := 0; i < 256; i++ {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], byte(i), 0}), 24)
		free := true
		for _, u := range used {
			if u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 left in %s (stop unused bridges' services, or free routes that overlap it)", pool)
}
