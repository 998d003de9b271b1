package resolver

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"

	"github.com/miekg/dns"
)

// The UDP path. miekg/dns's server reads each datagram in one goroutine,
// sets a read deadline per packet and starts a goroutine per query; for a
// handler that answers from memory in microseconds, that bookkeeping is
// most of the cost. udpServer instead runs a few reader goroutines on the
// socket, each answering its queries inline and reusing one buffer, and
// hands only the slow path (forwarding to a recursor) to a goroutine. It
// still uses miekg/dns for every message (unpack, pack) and the same
// handler (ServeDNS). It is used when the listen address is a specific IP;
// on a wildcard address, replies must leave from the address each query
// came to, which needs per-packet control messages, so Start uses miekg's
// server there (see docs/DNS.md).

// maxAsyncRecursions bounds the recursor exchanges in flight from the UDP
// path; past it, forwarded queries get SERVFAIL at once.
const maxAsyncRecursions = 1024

// udpReadBuffer is the size of a reader's datagram buffer; queries are
// small, and a larger one is truncated and answered FORMERR.
const udpReadBuffer = 4096

// udpServer serves DNS on one UDP socket.
type udpServer struct {
	s    *Server
	conn *net.UDPConn
	// sem bounds the recursions handed to goroutines.
	sem chan struct{}
}

// serve runs the readers until the socket is closed; it returns when all
// of them, and every recursion they started, have ended.
func (u *udpServer) serve() {
	n := max(2, runtime.GOMAXPROCS(0))
	done := make(chan struct{}, n)
	for range n {
		go func() {
			u.read()
			done <- struct{}{}
		}()
	}
	for range n {
		<-done
	}
}

// read is one reader loop.
func (u *udpServer) read() {
	buf := make([]byte, udpReadBuffer)
	w := &udpWriter{conn: u.conn}
	async := asyncFunc(u.async) // one method value per reader, not per query
	for {
		n, from, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient errors (ICMP-induced ECONNREFUSED and the like)
			// must not stop the server.
			u.s.cfg.Logger.Debug("resolver: udp read", "err", err)
			continue
		}
		pkt := buf[:n]
		req := new(dns.Msg)
		if err := req.Unpack(pkt); err != nil {
			u.formErr(w, from, pkt)
			continue
		}
		w.to = from
		u.s.serveDNS(w, req, async)
	}
}

// async runs a slow query (recursion) on its own goroutine, so that the
// reader goes back to the socket; false when too many are in flight.
func (u *udpServer) async(f func(w dns.ResponseWriter), w dns.ResponseWriter) bool {
	select {
	case u.sem <- struct{}{}:
	default:
		return false
	}
	uw := *w.(*udpWriter) // the reader reuses its writer: copy it
	u.s.wg.Add(1)
	go func() {
		defer u.s.wg.Done()
		defer func() { <-u.sem }()
		f(&uw)
	}()
	return true
}

// formErr answers a datagram that does not unpack with FORMERR when its
// header can be read and it is a query; anything else gets no answer (an
// answer to junk can be used for amplification).
func (u *udpServer) formErr(w *udpWriter, to netip.AddrPort, pkt []byte) {
	u.s.stats.queries.Add(1)
	if len(pkt) < 12 || pkt[2]&0x80 != 0 {
		return
	}
	var resp [12]byte
	copy(resp[0:2], pkt[0:2])                  // id
	resp[2] = 0x80 | pkt[2]&0x78 | pkt[2]&0x01 // QR, opcode, RD
	resp[3] = byte(dns.RcodeFormatError)       // rcode
	binary.BigEndian.PutUint16(resp[4:], 0)    // no question echoed
	u.s.stats.rcode(dns.RcodeFormatError)
	_, _ = u.conn.WriteToUDPAddrPort(resp[:], to)
}

// udpWriter is the dns.ResponseWriter of the UDP path.
type udpWriter struct {
	conn *net.UDPConn
	to   netip.AddrPort
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.conn.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.to) }
func (w *udpWriter) Write(b []byte) (int, error) {
	return w.conn.WriteToUDPAddrPort(b, w.to)
}
func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}
