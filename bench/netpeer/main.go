// Command netpeer is the service of the bench's network rows: built
// static and copied into a copy of the example rootfs, it runs inside the
// container and serves two ports, a sink and an echo:
//
//	netpeer SINK_PORT ECHO_PORT
//
// The sink reads a connection to its end and then writes the byte count,
// as 8 bytes big-endian, so the sender knows every byte arrived (and the
// transfer's time ends when the data is in, not when it left). The echo
// reads one request of echoSize bytes, writes it back and closes: one
// connection set-up plus one small request per connection.
package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

// echoSize is the request and the answer of the echo port, as the bench
// sends them (bench/net.go).
const echoSize = 64

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: netpeer SINK_PORT ECHO_PORT")
		os.Exit(2)
	}
	sink, err := net.Listen("tcp4", ":"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "netpeer:", err)
		os.Exit(1)
	}
	echo, err := net.Listen("tcp4", ":"+os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "netpeer:", err)
		os.Exit(1)
	}
	go serve(sink, drain)
	serve(echo, answer)
}

func serve(ln net.Listener, handle func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "netpeer:", err)
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}

func drain(c net.Conn) {
	buf := make([]byte, 256<<10)
	var n uint64
	for {
		k, err := c.Read(buf)
		n += uint64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return
		}
	}
	_, _ = c.Write(binary.BigEndian.AppendUint64(nil, n))
}

func answer(c net.Conn) {
	buf := make([]byte, echoSize)
	if _, err := io.ReadFull(c, buf); err != nil {
		return
	}
	_, _ = c.Write(buf)
}
