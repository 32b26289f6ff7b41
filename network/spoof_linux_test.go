package network

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A member with every capability in its namespace (the test runs as root
// there, as a container holding NET_RAW and more could) cannot speak as
// another member of its bridge: not with the other's address, not with
// another MAC, not through ARP.
func TestNoSpoofing(t *testing.T) {
	dir := stateDir(t)
	attacker := attach(t, Options{Service: "attacker", Bridge: "lan", StateDir: dir})
	victim := attach(t, Options{Service: "victim", Bridge: "lan", StateDir: dir})
	peer := attach(t, Options{Service: "peer", Bridge: "lan", StateDir: dir})
	svc := serve(t, peer.Netns, netip.AddrPortFrom(peer.Address, 7100))

	t.Run("own address and MAC reach the peer", func(t *testing.T) {
		if err := dialFrom(attacker.Netns, attacker.Address, svc); err != nil {
			t.Fatalf("attacker's own address: %v, want reached", err)
		}
	})
	t.Run("another member's address", func(t *testing.T) {
		err := inNetns(attacker.Netns, func() error {
			eth0, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.AddrAdd(eth0, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(victim.Address, 32))})
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := dialFrom(attacker.Netns, victim.Address, svc); err == nil {
			t.Errorf("a connection from the victim's address %s reached the peer, want dropped", victim.Address)
		}
	})
	t.Run("gratuitous ARP for another member's address", func(t *testing.T) {
		// The peer learns the victim's real MAC first.
		if err := dialFrom(victim.Netns, victim.Address, svc); err != nil {
			t.Fatalf("victim to peer: %v", err)
		}
		// Linux ignores a changed address for 1 s after an entry was
		// confirmed (neigh locktime): past it, a lie would be believed.
		time.Sleep(1100 * time.Millisecond)
		err := inNetns(attacker.Netns, func() error {
			return sendARPReply(victim.Address, memberMAC(attacker.Address), peer.Address, memberMAC(peer.Address))
		})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // the frame is delivered, or not, at once
		var got net.HardwareAddr
		err = inNetns(peer.Netns, func() error {
			neighs, err := netlink.NeighList(0, netlink.FAMILY_V4)
			for _, n := range neighs {
				if n.IP.Equal(net.IP(victim.Address.AsSlice())) {
					got = n.HardwareAddr
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if got.String() == memberMAC(attacker.Address).String() {
			t.Errorf("the peer's ARP cache maps the victim %s to the attacker's MAC %s", victim.Address, got)
		}
	})
	t.Run("another MAC", func(t *testing.T) {
		err := inNetns(attacker.Netns, func() error {
			eth0, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			return netlink.LinkSetHardwareAddr(eth0, net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99})
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := dialFrom(attacker.Netns, attacker.Address, svc); err == nil {
			t.Error("a frame from a MAC not the attacker's own reached the peer, want dropped")
		}
	})
}

// dialFrom connects over TCP from src in the namespace at path.
func dialFrom(path string, src netip.Addr, to netip.AddrPort) error {
	return inNetns(path, func() error {
		d := net.Dialer{Timeout: time.Second, LocalAddr: &net.TCPAddr{IP: net.IP(src.AsSlice())}}
		c, err := d.Dial("tcp", to.String())
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// sendARPReply sends, on eth0 of the calling thread's namespace, an ARP
// reply saying that ip is at mac, to target at targetMAC.
func sendARPReply(ip netip.Addr, mac net.HardwareAddr, target netip.Addr, targetMAC net.HardwareAddr) error {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ARP)))
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	eth0, err := net.InterfaceByName("eth0")
	if err != nil {
		return err
	}
	// The frame's source MAC is the attacker's own, as the rules want; the
	// lie is in the ARP sender fields.
	frame := append(append(append([]byte{}, targetMAC...), eth0.HardwareAddr...), 0x08, 0x06)
	frame = binary.BigEndian.AppendUint16(frame, 1)      // Ethernet
	frame = binary.BigEndian.AppendUint16(frame, 0x0800) // IPv4
	frame = append(frame, 6, 4)
	frame = binary.BigEndian.AppendUint16(frame, 2) // reply
	s, d := ip.As4(), target.As4()
	frame = append(append(append(append(frame, mac...), s[:]...), targetMAC...), d[:]...)
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: eth0.Index, Halen: 6}
	copy(sa.Addr[:], targetMAC)
	return unix.Sendto(fd, frame, 0, sa)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
