package transport

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"
)

// FuzzDecodeHeader feeds arbitrary bytes to the stream header reader: it
// must never panic, never accept more than the limit, and everything it
// accepts must re-encode to a header it decodes identically.
func FuzzDecodeHeader(f *testing.F) {
	for _, h := range []Header{{Version: 1, Kind: 1}, {Version: 1, Kind: 2, Meta: []byte("meta")}} {
		b, _ := appendHeader(nil, h, DefaultMaxHeaderSize)
		f.Add(b)
	}
	f.Add([]byte{0, 4, 0x83, 0x02, 0x01, 0x40})
	f.Add([]byte{0, 3, 0xff, 0xff, 0xff})
	f.Add([]byte{0xff, 0xff})
	f.Add([]byte{0, 5, 0x9f, 0x01, 0x01, 0x40, 0xff})
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 256
		h, err := readHeader(bytes.NewReader(in), max)
		if err != nil {
			return
		}
		if h.Version != HeaderVersion {
			t.Fatalf("accepted version %d", h.Version)
		}
		b, err := appendHeader(nil, h, MaxHeaderSizeLimit)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		h2, err := readHeader(bytes.NewReader(b), MaxHeaderSizeLimit)
		if err != nil || h2.Kind != h.Kind || !bytes.Equal(h2.Meta, h.Meta) {
			t.Fatalf("re-decode %+v -> %+v, %v", h, h2, err)
		}
	})
}

// FuzzReadMsg feeds arbitrary bytes to ReadMsg: no panic, no message over
// the limit, and a decoded message's length prefix matches its bytes.
func FuzzReadMsg(f *testing.F) {
	var buf bytes.Buffer
	_ = WriteMsg(&buf, []byte("hello"))
	_ = WriteMsg(&buf, nil)
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 0, 0, 3, 1})
	f.Add([]byte{0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 1 << 10
		r := bytes.NewReader(in)
		off := 0
		for {
			m, err := ReadMsg(r, max)
			if err != nil {
				if err == io.EOF && off != len(in) {
					t.Fatalf("io.EOF at offset %d of %d", off, len(in))
				}
				if err != io.EOF && !errors.Is(err, ErrMsgTooLarge) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("unexpected error kind: %v", err)
				}
				return
			}
			if len(m) > max {
				t.Fatalf("message of %d bytes over limit %d", len(m), max)
			}
			if int(binary.BigEndian.Uint32(in[off:])) != len(m) || !bytes.Equal(in[off+4:off+4+len(m)], m) {
				t.Fatalf("message at %d does not match its frame", off)
			}
			off += 4 + len(m)
		}
	})
}

// FuzzParsePeerCertificate feeds arbitrary DER to the certificate check:
// no panic, and anything accepted has an Ed25519 key and a bounded chain.
func FuzzParsePeerCertificate(f *testing.F) {
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	cert, err := newCertificate(priv, []byte{0x82, 0x01, 0x02}, now)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(cert.Certificate[0])
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x01})
	f.Fuzz(func(t *testing.T, der []byte) {
		pub, chain, err := parsePeerCertificate([][]byte{der}, now)
		if err != nil {
			return
		}
		if len(pub) != ed25519.PublicKeySize || len(chain) > maxChainSize {
			t.Fatalf("accepted key of %d bytes, chain of %d", len(pub), len(chain))
		}
	})
}
