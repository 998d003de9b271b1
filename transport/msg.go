package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxMsgSize is the message size limit gossip uses with ReadMsg.
const DefaultMaxMsgSize = 4 << 20

// ErrMsgTooLarge is returned by ReadMsg and WriteMsg for a message over the limit.
var ErrMsgTooLarge = errors.New("transport: message too large")

// msgSizeLimit is the largest message the 4-byte prefix can describe that
// WriteMsg agrees to send.
const msgSizeLimit = 1<<31 - 1

// WriteMsg writes msg to w as one framed message: a big-endian uint32 length
// followed by the bytes (docs/WIRE.md "## transport"). Small messages are
// written with a single Write call.
func WriteMsg(w io.Writer, msg []byte) error {
	if len(msg) > msgSizeLimit {
		return fmt.Errorf("%w: %d bytes", ErrMsgTooLarge, len(msg))
	}
	var lp [4]byte
	binary.BigEndian.PutUint32(lp[:], uint32(len(msg)))
	if len(msg) <= 16<<10 {
		buf := make([]byte, 0, 4+len(msg))
		buf = append(append(buf, lp[:]...), msg...)
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("transport: write message: %w", err)
		}
		return nil
	}
	if _, err := w.Write(lp[:]); err != nil {
		return fmt.Errorf("transport: write message: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("transport: write message: %w", err)
	}
	return nil
}

// ReadMsg reads one message framed by WriteMsg from r. A length over max is
// refused with ErrMsgTooLarge before any body byte is read or allocated.
// A clean end of stream before the first length byte returns io.EOF; a
// stream that ends inside a message returns io.ErrUnexpectedEOF (wrapped).
func ReadMsg(r io.Reader, max int) ([]byte, error) {
	var lp [4]byte
	if _, err := io.ReadFull(r, lp[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("transport: read message length: %w", err)
	}
	n := binary.BigEndian.Uint32(lp[:])
	if max < 0 || uint64(n) > uint64(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMsgTooLarge, n, max)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("transport: read message body: %w", err)
	}
	return buf, nil
}
