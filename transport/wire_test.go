package transport

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"math/big"
	"testing"
	"time"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []Header{
		{Version: 1, Kind: KindSync},
		{Version: 1, Kind: KindProxy, Meta: []byte{0xa1, 0x61, 0x64, 0x62, 0x64, 0x62}},
		{Version: 1, Kind: 255, Meta: bytes.Repeat([]byte{7}, 1000)},
	} {
		b, err := appendHeader(nil, h, DefaultMaxHeaderSize)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readHeader(bytes.NewReader(b), DefaultMaxHeaderSize)
		if err != nil {
			t.Fatal(err)
		}
		if got.Version != h.Version || got.Kind != h.Kind || !bytes.Equal(got.Meta, h.Meta) {
			t.Fatalf("round trip %+v -> %+v", h, got)
		}
	}
}

// TestHeaderBytes pins the wire form documented in docs/WIRE.md.
func TestHeaderBytes(t *testing.T) {
	b, err := appendHeader(nil, Header{Version: 1, Kind: KindProxy, Meta: []byte{0xaa, 0xbb}}, DefaultMaxHeaderSize)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(b), "0006"+"83"+"01"+"02"+"42aabb"; got != want {
		t.Fatalf("header bytes = %s, want %s", got, want)
	}
	b, _ = appendHeader(nil, Header{Version: 1, Kind: KindSync}, DefaultMaxHeaderSize)
	if got, want := hex.EncodeToString(b), "0004830101"+"40"; got != want {
		t.Fatalf("header bytes = %s, want %s", got, want)
	}
}

func TestHeaderLimits(t *testing.T) {
	if _, err := appendHeader(nil, Header{Version: 1, Meta: make([]byte, 100)}, 64); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("encode over limit: %v", err)
	}
	big, _ := appendHeader(nil, Header{Version: 1, Meta: make([]byte, 100)}, DefaultMaxHeaderSize)
	if _, err := readHeader(bytes.NewReader(big), 64); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("decode over limit: %v", err)
	}
	if _, err := readHeader(bytes.NewReader(big[:10]), DefaultMaxHeaderSize); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: %v", err)
	}
}

func TestMsgFraming(t *testing.T) {
	var buf bytes.Buffer
	msgs := [][]byte{{}, []byte("hello"), bytes.Repeat([]byte{1}, 20<<10), bytes.Repeat([]byte{2}, 100)}
	for _, m := range msgs {
		if err := WriteMsg(&buf, m); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range msgs {
		got, err := ReadMsg(&buf, DefaultMaxMsgSize)
		if err != nil || !bytes.Equal(got, m) {
			t.Fatalf("ReadMsg = %d bytes, %v; want %d bytes", len(got), err, len(m))
		}
	}
	if _, err := ReadMsg(&buf, DefaultMaxMsgSize); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}

	for _, tc := range []struct {
		name string
		in   []byte
		max  int
		want error
	}{
		{"over limit", binary.BigEndian.AppendUint32(nil, 101), 100, ErrMsgTooLarge},
		{"huge length, no body", []byte{0xff, 0xff, 0xff, 0xff}, DefaultMaxMsgSize, ErrMsgTooLarge},
		{"short length", []byte{0, 0}, 100, io.ErrUnexpectedEOF},
		{"short body", append(binary.BigEndian.AppendUint32(nil, 10), 1, 2), 100, io.ErrUnexpectedEOF},
		{"empty body ends", binary.BigEndian.AppendUint32(nil, 3), 100, io.ErrUnexpectedEOF},
		{"negative max", binary.BigEndian.AppendUint32(nil, 0), -1, ErrMsgTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := ReadMsg(bytes.NewReader(tc.in), tc.max); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCertificate(t *testing.T) {
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	pub, priv := newKey(t)
	chain := []byte("the chain")
	cert, err := newCertificate(priv, chain, now)
	if err != nil {
		t.Fatal(err)
	}
	gotPub, gotChain, err := parsePeerCertificate(cert.Certificate, now)
	if err != nil || !bytes.Equal(gotPub, pub) || !bytes.Equal(gotChain, chain) {
		t.Fatalf("parse = %x, %q, %v", gotPub, gotChain, err)
	}
	if _, _, err := parsePeerCertificate(cert.Certificate, now.Add(certLifetime+48*time.Hour)); err == nil {
		t.Error("expired certificate accepted")
	}
	if _, _, err := parsePeerCertificate(cert.Certificate, now.Add(-48*time.Hour)); err == nil {
		t.Error("not yet valid certificate accepted")
	}
	if _, _, err := parsePeerCertificate(append(cert.Certificate, cert.Certificate[0]), now); err == nil {
		t.Error("two certificates accepted")
	}
	if _, _, err := parsePeerCertificate([][]byte{{0x30, 0x03, 1, 2, 3}}, now); err == nil {
		t.Error("garbage accepted")
	}
	if _, err := newCertificate(priv, make([]byte, maxChainSize+1), now); err == nil {
		t.Error("oversized chain accepted")
	}

	// Certificates peerd would never send.
	tmpl := func() *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}
	}
	noExt, err := x509.CreateCertificate(rand.Reader, tmpl(), tmpl(), pub, priv)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parsePeerCertificate([][]byte{noExt}, now); err == nil {
		t.Error("certificate without chain extension accepted")
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	withExt := tmpl()
	withExt.ExtraExtensions = []pkix.Extension{{Id: OIDChainExtension, Value: chain}}
	ec, err := x509.CreateCertificate(rand.Reader, withExt, withExt, &ek.PublicKey, ek)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parsePeerCertificate([][]byte{ec}, now); err == nil {
		t.Error("ECDSA certificate accepted")
	}
	// Ed25519 key signed by another Ed25519 key: not self-signed.
	_, otherPriv := newKey(t)
	cross, err := x509.CreateCertificate(rand.Reader, withExt, withExt, pub, otherPriv)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := parsePeerCertificate([][]byte{cross}, now); err == nil {
		t.Error("certificate not signed by its own key accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	_, priv := newKey(t)
	ok := func(ed25519.PublicKey, []byte) error { return nil }
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"minimal", Config{Key: priv, VerifyPeer: ok}, true},
		{"no key", Config{VerifyPeer: ok}, false},
		{"short key", Config{Key: priv[:10], VerifyPeer: ok}, false},
		{"no verifier", Config{Key: priv}, false},
		{"negative idle", Config{Key: priv, VerifyPeer: ok, IdleTimeout: -1}, false},
		{"negative streams", Config{Key: priv, VerifyPeer: ok, MaxIncomingStreams: -1}, false},
		{"header too small", Config{Key: priv, VerifyPeer: ok, MaxHeaderSize: 8}, false},
		{"header too large", Config{Key: priv, VerifyPeer: ok, MaxHeaderSize: 1 << 16}, false},
		{"keepalive beyond dead timeout", Config{Key: priv, VerifyPeer: ok, KeepAlivePeriod: time.Minute}, false},
		{"window inversion", Config{Key: priv, VerifyPeer: ok, InitialStreamWindow: 32 << 20}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cfg.validate()
			if (err == nil) != tc.ok {
				t.Fatalf("validate err = %v, want ok=%v", err, tc.ok)
			}
			if err == nil && (got.MaxIncomingStreams != DefaultMaxIncomingStreams || got.IdleTimeout != DefaultIdleTimeout ||
				got.MaxStreamWindow != DefaultMaxStreamWindow || got.Logger == nil || got.ListenAddr != DefaultListenAddr) {
				t.Fatalf("defaults not applied: %+v", got)
			}
		})
	}
}
