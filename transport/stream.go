package transport

import (
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// Stream error codes sent in RESET_STREAM / STOP_SENDING frames. Values are
// wire-visible: never renumber.
const (
	CodeStreamClosed       quic.StreamErrorCode = 0x100 // Close with data still unread
	CodeBadHeader          quic.StreamErrorCode = 0x101 // header malformed or too large
	CodeUnsupportedVersion quic.StreamErrorCode = 0x102 // header version unknown
	CodeUnknownKind        quic.StreamErrorCode = 0x103 // no handler for the header's kind
	CodeHeaderTimeout      quic.StreamErrorCode = 0x104 // header not received in time
	CodeShutdown           quic.StreamErrorCode = 0x105 // transport closing
	CodeHandlerPanic       quic.StreamErrorCode = 0x106 // the acceptor's handler panicked
)

// Connection error codes sent in CONNECTION_CLOSE frames.
const (
	CodeConnShutdown  quic.ApplicationErrorCode = 0x0 // Transport.Close
	CodeConnClosePeer quic.ApplicationErrorCode = 0x1 // ClosePeer (e.g. revocation)
	CodeConnIdle      quic.ApplicationErrorCode = 0x2 // no stream for IdleTimeout
)

// Stream is one typed bidirectional stream to a peer. Read and Write may be
// used from two goroutines at once (one each); Close may be called from any
// goroutine and more than once.
type Stream struct {
	qs   *quic.Stream
	pc   *peerConn
	t    *Transport
	peer PeerInfo
	hdr  Header

	closeOnce   sync.Once
	mu          sync.Mutex // guards writeClosed
	writeClosed bool
}

func newStream(t *Transport, pc *peerConn, qs *quic.Stream, hdr Header) *Stream {
	t.stats.streams.Add(1)
	t.stats.streamsTotal.Add(1)
	return &Stream{qs: qs, pc: pc, t: t, peer: pc.info, hdr: hdr}
}

// Peer returns the verified identity and address of the other side.
func (s *Stream) Peer() PeerInfo { return s.peer }

// Header returns the header the stream was opened with.
func (s *Stream) Header() Header { return s.hdr }

// Read reads stream data; it returns io.EOF after the peer's CloseWrite.
func (s *Stream) Read(p []byte) (int, error) {
	n, err := s.qs.Read(p)
	if n > 0 {
		s.t.stats.bytesIn.Add(uint64(n))
	}
	return n, err
}

// Write writes stream data.
func (s *Stream) Write(p []byte) (int, error) {
	n, err := s.qs.Write(p)
	if n > 0 {
		s.t.stats.bytesOut.Add(uint64(n))
	}
	return n, err
}

// CloseWrite ends the sending direction (the peer reads io.EOF); reading
// goes on. It is what a proxy calls when its local side half-closes.
func (s *Stream) CloseWrite() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeClosed {
		return nil
	}
	s.writeClosed = true
	return s.qs.Close()
}

// Close ends both directions and releases the stream: pending writes are
// still delivered, unread incoming data is refused (STOP_SENDING with
// CodeStreamClosed). Every stream must be closed (handlers' streams are
// closed by the Transport when the handler returns); an unclosed stream
// keeps its connection from idling out.
func (s *Stream) Close() error {
	err := s.CloseWrite()
	s.qs.CancelRead(CodeStreamClosed)
	s.release()
	return err
}

// Reset aborts both directions at once with code: unsent data is dropped.
func (s *Stream) Reset(code quic.StreamErrorCode) {
	s.mu.Lock()
	s.writeClosed = true
	s.mu.Unlock()
	s.qs.CancelWrite(code)
	s.qs.CancelRead(code)
	s.release()
}

// SetDeadline sets the read and write deadlines.
func (s *Stream) SetDeadline(t time.Time) error { return s.qs.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (s *Stream) SetReadDeadline(t time.Time) error { return s.qs.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.qs.SetWriteDeadline(t) }

func (s *Stream) release() {
	s.closeOnce.Do(func() {
		s.t.stats.streams.Add(-1)
		s.pc.release(s.t.cfg.now())
	})
}
