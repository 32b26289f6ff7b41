package network

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Denied egress is logged by the kernel rule `log group G` (nfnetlink_log) to a group of the
// service's own, read here over netlink: no kernel log lines, no other reader's packets, and the
// kernel drops what nobody reads. A group has one listener, so each lease gets its own.
const (
	nfnlSubsysULOG    = 4
	nfulnlMsgPacket   = 0
	nfulnlMsgConfig   = 1
	nfulaCfgCmd       = 1
	nfulaCfgMode      = 2
	nfulaCfgQthresh   = 5
	nfulnlCfgCmdBind  = 1
	nfulnlCopyPacket  = 2
	nfulaPayload      = 9
	denialCopyRange   = 64 // the IPv4 header and the ports
	denialEvery       = 10 * time.Second
	denialBurstPerSec = 5
)

// denialReader reads one NFLOG group and writes each denial as `NAME: egress denied ADDR:PORT/PROTO`.
type denialReader struct {
	conn    *netlink.Conn
	service string
	w       io.Writer

	// Rate limit, on top of the kernel's: one line per destination per denialEvery, and at most
	// denialBurstPerSec lines a second in all, so a scanning service cannot flood the log.
	last   map[string]time.Time
	second time.Time
	count  int
}

func listenDenials(group uint16, service string, w io.Writer) (*denialReader, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("nflog: %w", err)
	}
	cfg := func(attrs []byte) error {
		data := append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, attrs...)
		binary.BigEndian.PutUint16(data[2:], group)
		_, err := c.Execute(netlink.Message{
			Header: netlink.Header{
				Type:  netlink.HeaderType(nfnlSubsysULOG<<8 | nfulnlMsgConfig),
				Flags: netlink.Request | netlink.Acknowledge,
			},
			Data: data,
		})
		return err
	}
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(nfulaCfgCmd, []byte{nfulnlCfgCmdBind})
	bind, _ := ae.Encode()
	if err := cfg(bind); err != nil {
		c.Close()
		return nil, fmt.Errorf("nflog group %d: %w (another process listens on it)", group, err)
	}
	mode := make([]byte, 6)
	binary.BigEndian.PutUint32(mode, denialCopyRange)
	mode[4] = nfulnlCopyPacket
	ae = netlink.NewAttributeEncoder()
	ae.Bytes(nfulaCfgMode, mode)
	m, _ := ae.Encode()
	if err := cfg(m); err != nil {
		c.Close()
		return nil, fmt.Errorf("nflog group %d mode: %w", group, err)
	}
	// One packet per message, sent at once. The kernel's default batches up to 100 and flushes
	// after a second (NFULNL_QTHRESH_DEFAULT, NFULNL_TIMEOUT_DEFAULT in nfnetlink_log.c): a
	// denial came a second late, and one in a service's last second was lost with the socket at
	// its exit. The rule's rate limit, not batching, bounds the volume.
	ae = netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Uint32(nfulaCfgQthresh, 1)
	q, _ := ae.Encode()
	if err := cfg(q); err != nil {
		c.Close()
		return nil, fmt.Errorf("nflog group %d queue threshold: %w", group, err)
	}
	return &denialReader{conn: c, service: service, w: w, last: map[string]time.Time{}}, nil
}

// run reads until the connection is closed.
func (d *denialReader) run(wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		msgs, err := d.conn.Receive()
		if err != nil {
			return
		}
		for _, m := range msgs {
			d.handle(uint16(m.Header.Type), m.Data)
		}
	}
}

// handle reports the denial in one netlink message, if it is one.
func (d *denialReader) handle(typ uint16, data []byte) {
	if typ != nfnlSubsysULOG<<8|nfulnlMsgPacket || len(data) < 4 {
		return
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return
	}
	for ad.Next() {
		if ad.Type() == nfulaPayload {
			if s, ok := describePacket(ad.Bytes()); ok {
				d.report(s, time.Now())
			}
		}
	}
}

func (d *denialReader) report(dest string, now time.Time) {
	if t, ok := d.last[dest]; ok && now.Sub(t) < denialEvery {
		return
	}
	if now.Sub(d.second) >= time.Second {
		d.second, d.count = now, 0
	}
	if d.count >= denialBurstPerSec {
		return
	}
	d.count++
	d.last[dest] = now
	if len(d.last) > 1024 {
		for k, t := range d.last {
			if now.Sub(t) >= denialEvery {
				delete(d.last, k)
			}
		}
	}
	fmt.Fprintf(d.w, "%s: egress denied %s\n", d.service, dest)
}

// close ends run; the caller waits for run, then calls closeConn.
func (d *denialReader) close() {
	if err := d.conn.SetReadDeadline(time.Now()); err != nil {
		d.conn.Close()
	}
}

// closeConn reports what the kernel sent up to now and run did not read, then closes the
// socket. The kernel sends each denial as it logs it (see listenDenials), in the context of the
// packet's sender, so by the time the service is gone its last denials sit in the socket's
// buffer: they are read without waiting (MSG_DONTWAIT), where a read with a timeout made every
// bridge service's stop wait out the timeout.
func (d *denialReader) closeConn() {
	defer d.conn.Close()
	rc, err := d.conn.SyscallConn()
	if err != nil {
		return
	}
	buf := make([]byte, 64<<10)
	_ = rc.Control(func(fd uintptr) {
		for {
			n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if err != nil || n <= 0 {
				return // EAGAIN: nothing left
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:n])
			if err != nil {
				continue
			}
			for _, m := range msgs {
				d.handle(m.Header.Type, m.Data)
			}
		}
	})
}

// describePacket turns an IPv4 packet's head into "ADDR:PORT/PROTO" (or "ADDR/PROTO").
func describePacket(p []byte) (string, bool) {
	if len(p) < 20 || p[0]>>4 != 4 {
		return "", false
	}
	ihl := int(p[0]&0x0f) * 4
	dst := netip.AddrFrom4([4]byte(p[16:20]))
	proto := p[9]
	name := map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_ICMP: "icmp"}[proto]
	if name == "" {
		name = fmt.Sprintf("proto-%d", proto)
	}
	if (proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_UDP) && len(p) >= ihl+4 {
		port := binary.BigEndian.Uint16(p[ihl+2:])
		return fmt.Sprintf("%s/%s", netip.AddrPortFrom(dst, port), name), true
	}
	return fmt.Sprintf("%s/%s", dst, name), true
}
