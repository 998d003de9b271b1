package peer

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// halfCloser is one side of a proxied connection: a TCP connection or a
// transport stream. CloseWrite passes a half-close on.
type halfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// Copy buffers: a direction starts with a small buffer and moves to a
// large one the first time a read fills it, so idle and request-response
// connections hold 4 KiB per direction and bulk transfers get 64 KiB reads
// (a few system calls per QUIC flow-control window).
const (
	proxySmallBuf = 4 << 10
	proxyBufSize  = 64 << 10
)

var (
	proxySmallBufs = sync.Pool{New: func() any { b := make([]byte, proxySmallBuf); return &b }}
	proxyBufs      = sync.Pool{New: func() any { b := make([]byte, proxyBufSize); return &b }}
)

// copyHalf copies src to dst until EOF or an error, adding the bytes to n,
// then half-closes dst on a clean EOF. It returns the first error other
// than a clean EOF.
func copyHalf(dst, src halfCloser, n *atomic.Uint64) error {
	pool := &proxySmallBufs
	bp := pool.Get().(*[]byte)
	defer func() { pool.Put(bp) }()
	buf := *bp
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n.Add(uint64(nw))
			if werr != nil {
				return werr
			}
			if nr == len(buf) && pool == &proxySmallBufs {
				pool.Put(bp)
				pool = &proxyBufs
				bp = pool.Get().(*[]byte)
				buf = *bp
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return dst.CloseWrite()
			}
			return rerr
		}
	}
}

// pipe joins two sides in both directions, counting bytes a→b in ab and
// b→a in ba, and closes both once both directions ended or either failed.
// One direction runs on the caller's goroutine, so a proxied connection
// costs one extra goroutine per side. It returns the first failure (nil
// after two clean half-closes).
func pipe(a, b halfCloser, ab, ba *atomic.Uint64) error {
	done := make(chan error, 1)
	go func() {
		err := copyHalf(b, a, ab)
		if err != nil {
			a.Close()
			b.Close()
		}
		done <- err
	}()
	err := copyHalf(a, b, ba)
	if err != nil {
		a.Close()
		b.Close()
	}
	err2 := <-done
	a.Close()
	b.Close()
	if err == nil || isClosedErr(err) {
		return err2
	}
	return err
}

// isClosedErr reports errors that only say the other side went away.
func isClosedErr(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe)
}
