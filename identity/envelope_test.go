package identity

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name  string
		seal  func() (*Envelope, error)
		check func(Capabilities) bool
	}{
		{"node", func() (*Envelope, error) { return Seal("peerd/delta", []byte("batch"), f.node, f.nodeChain) },
			func(c Capabilities) bool { return c.MayPublishService("web-1") && !c.MayPublishService("api") }},
		{"root", func() (*Envelope, error) { return Seal("peerd/intention", nil, f.root, nil) },
			func(c Capabilities) bool { return c.Root && c.SignIntentions }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := tc.seal()
			if err != nil {
				t.Fatal(err)
			}
			b, err := e.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			back, err := UnmarshalEnvelope(b)
			if err != nil {
				t.Fatal(err)
			}
			caps, err := f.v.Open(back, t0)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(caps) || back.Type != e.Type || !bytes.Equal(back.Payload, e.Payload) {
				t.Fatalf("caps %+v, envelope %+v", caps, back)
			}
		})
	}
}

func TestOpenRejects(t *testing.T) {
	f := newFixture(t)
	seal := func() *Envelope {
		e, err := Seal("peerd/delta", []byte("batch"), f.node, f.nodeChain)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	cases := []struct {
		name     string
		mutate   func(e *Envelope)
		now      time.Time
		sentinel error
		detail   string
	}{
		{"payload changed", func(e *Envelope) { e.Payload = []byte("other") }, t0, ErrBadSignature, "does not verify"},
		{"type changed", func(e *Envelope) { e.Type = "peerd/intention" }, t0, ErrBadSignature, "does not verify"},
		{"chain swapped", func(e *Envelope) { e.Chain = f.nodeChain[:1] }, t0, ErrBadSignature, "does not verify"},
		{"signer swapped", func(e *Envelope) { e.Signer = pubOf(f.ops) }, t0, ErrBadSignature, "does not verify"},
		{"signature flipped", func(e *Envelope) { e.Signature[10] ^= 0x80 }, t0, ErrBadSignature, "does not verify"},
		{"expired chain", func(e *Envelope) {}, t0.Add(48 * time.Hour), ErrExpired, "chain link 1"},
		{"root without chain", func(e *Envelope) {
			*e = *must(Seal("t", nil, f.node, nil))
		}, t0, ErrUntrusted, "not a trusted root"},
		{"bad type", func(e *Envelope) { e.Type = "has space" }, t0, ErrMalformed, "printable"},
		{"short signature", func(e *Envelope) { e.Signature = e.Signature[:10] }, t0, ErrMalformed, "wrong size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := seal()
			c.mutate(e)
			_, err := f.v.Open(e, c.now)
			if !errors.Is(err, c.sentinel) || !strings.Contains(err.Error(), c.detail) {
				t.Fatalf("err = %v, want %v containing %q", err, c.sentinel, c.detail)
			}
		})
	}
	if _, err := f.v.Open(nil, t0); !errors.Is(err, ErrMalformed) {
		t.Fatal(err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestSealRejects(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name string
		seal func() error
		want error
	}{
		{"empty type", func() error { _, err := Seal("", nil, f.node, f.nodeChain); return err }, ErrInvalid},
		{"long type", func() error { _, err := Seal(strings.Repeat("t", MaxTypeLen+1), nil, f.node, f.nodeChain); return err }, ErrInvalid},
		{"huge payload", func() error { _, err := Seal("t", make([]byte, MaxPayloadSize+1), f.node, f.nodeChain); return err }, ErrInvalid},
		{"foreign chain", func() error { _, err := Seal("t", nil, f.ops, f.nodeChain); return err }, ErrBrokenChain},
		{"bad key", func() error { _, err := Seal("t", nil, f.ops[:3], nil); return err }, ErrInvalid},
	}
	for _, c := range cases {
		if err := c.seal(); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestUnmarshalEnvelopeRejects(t *testing.T) {
	f := newFixture(t)
	e, _ := Seal("peerd/delta", []byte("batch"), f.node, f.nodeChain)
	good, _ := e.Marshal()
	for name, b := range map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("\xa1\x01\x01"),
		"truncated": good[:len(good)/2],
		"trailing":  append(append([]byte(nil), good...), 0xf6),
	} {
		if _, err := UnmarshalEnvelope(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Every single-byte flip fails to decode or to open.
	for i := range good {
		mut := bytes.Clone(good)
		mut[i] ^= 0x01
		if e, err := UnmarshalEnvelope(mut); err == nil {
			if _, err := f.v.Open(e, t0); err == nil {
				t.Fatalf("flipping byte %d still opens", i)
			}
		}
	}
}
