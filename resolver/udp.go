package resolver

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// The UDP path. miekg/dns's server reads each datagram in one goroutine,
// sets a read deadline per packet and starts a goroutine per query; for a
// handler that answers from memory in microseconds, that bookkeeping is
// most of the cost. udpServer instead runs a few reader goroutines on the
// socket; each takes up to udpBatch queries per recvmmsg, answers them
// inline and sends the answers with one sendmmsg, and hands only the slow
// path (forwarding to a recursor) to a goroutine. It still uses miekg/dns
// for every message (unpack, pack) and the same handler (serveDNS). It is
// used when the listen address is a specific IP; on a wildcard address,
// replies must leave from the address each query came to, which needs
// per-packet control messages, so Start uses miekg's server there (see
// docs/DNS.md).

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
	// closed is set by Close before it closes conn, so that readers stop
	// on the read error that follows.
	closed atomic.Bool
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

// udpBatch is how many datagrams a reader takes from the socket per system
// call (recvmmsg), and answers per sendmmsg. Under load, queries queue up
// and one call moves many; when idle it moves one, with no added wait.
const udpBatch = 16

// batchConn is the part of x/net's ipv4/ipv6 PacketConn the readers use
// (both take the same socket.Message type).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

func (u *udpServer) batchConn() batchConn {
	if a, ok := u.conn.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		return ipv6.NewPacketConn(u.conn)
	}
	return ipv4.NewPacketConn(u.conn)
}

// read is one reader loop: read a batch of queries, answer each inline
// into a per-slot buffer, send the batch of answers.
func (u *udpServer) read() {
	bc := u.batchConn()
	in := make([]ipv4.Message, udpBatch)
	for i := range in {
		in[i].Buffers = [][]byte{make([]byte, udpReadBuffer)}
	}
	out := make([]ipv4.Message, 0, udpBatch)
	outBufs := make([][]byte, udpBatch)
	outSlots := make([][1][]byte, udpBatch)
	w := &udpWriter{conn: u.conn, batch: true}
	async := asyncFunc(u.async) // one method value per reader, not per query
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if u.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Transient errors (ICMP-induced ECONNREFUSED and the like)
			// must not stop the server.
			u.s.cfg.Logger.Debug("resolver: udp read", "err", err)
			continue
		}
		out = out[:0]
		for i := range n {
			msg := &in[i]
			from, ok := msg.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			w.to = from.AddrPort()
			w.pending = outBufs[i][:0]
			w.wrote = false
			pkt := msg.Buffers[0][:msg.N]
			req := new(dns.Msg)
			if err := req.Unpack(pkt); err != nil {
				u.formErr(w, pkt)
			} else {
				u.s.serveDNS(w, req, async)
			}
			if w.wrote {
				outBufs[i] = w.pending
				outSlots[i][0] = w.pending
				out = append(out, ipv4.Message{Buffers: outSlots[i][:], Addr: msg.Addr})
			}
		}
		for len(out) > 0 {
			sent, err := bc.WriteBatch(out, 0)
			if err != nil {
				// A client gone away is not our error to report; drop the
				// answer that failed and go on with the rest.
				u.s.cfg.Logger.Debug("resolver: udp write", "err", err)
				sent = max(sent, 1)
			}
			out = out[sent:]
		}
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
	uw := *w.(*udpWriter)             // the reader reuses its writer: copy it
	uw.batch, uw.pending = false, nil // and answer directly, not in the batch
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
func (u *udpServer) formErr(w *udpWriter, pkt []byte) {
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
	_, _ = w.Write(resp[:])
}

// udpWriter is the dns.ResponseWriter of the UDP path.
type udpWriter struct {
	conn *net.UDPConn
	to   netip.AddrPort
	// batch set: Write copies the answer into pending for the reader's
	// sendmmsg instead of sending it.
	batch   bool
	pending []byte
	wrote   bool
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.conn.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.to) }
func (w *udpWriter) Write(b []byte) (int, error) {
	if w.batch {
		w.pending = append(w.pending[:0], b...)
		w.wrote = true
		return len(b), nil
	}
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
