package store

import (
	"bytes"
	"errors"
	"testing"
)

func TestRecordFrameRoundTrip(t *testing.T) {
	for _, rec := range [][]byte{nil, {}, {0}, []byte("delta"), bytes.Repeat([]byte{0xab}, 300)} {
		b := encodeRecord(42, rec)
		got, err := decodeRecord(42, b)
		if err != nil {
			t.Fatalf("decode %x: %v", b, err)
		}
		if !bytes.Equal(got, rec) {
			t.Fatalf("got %x, want %x", got, rec)
		}
	}
}

func TestRecordFrameRejectsDamage(t *testing.T) {
	good := encodeRecord(7, []byte("hello, replica"))
	flip := func(i int) []byte {
		b := append([]byte{}, good...)
		b[i] ^= 0x40
		return b
	}
	cases := []struct {
		name string
		seq  Seq
		b    []byte
	}{
		{"empty", 7, nil},
		{"wrong kind", 7, flip(0)},
		{"bad length", 7, flip(1)},
		{"bad crc", 7, flip(3)},
		{"bad body", 7, flip(len(good) - 1)},
		{"truncated", 7, good[:len(good)-3]},
		{"truncated header", 7, good[:3]},
		{"padded", 7, append(append([]byte{}, good...), 0)},
		{"wrong key", 8, good},
		{"snapshot frame as record", 7, encodeSnapshot([]byte("x"), 7)},
		{"overlong varint", 7, []byte{kindRecord, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := decodeRecord(c.seq, c.b); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestSnapshotFrame(t *testing.T) {
	for _, st := range [][]byte{nil, []byte("state"), bytes.Repeat([]byte{1}, 5000)} {
		b := encodeSnapshot(st, 99)
		got, upTo, err := decodeSnapshot(b)
		if err != nil || upTo != 99 || !bytes.Equal(got, st) {
			t.Fatalf("decode = %x, %d, %v", got, upTo, err)
		}
		// Must match the generic framing it documents.
		body := append(seqKey(99), st...)
		if want := appendFrame(nil, kindSnapshot, 0, body); !bytes.Equal(b, want) {
			t.Fatalf("encodeSnapshot differs from appendFrame")
		}
	}
	short := appendFrame(nil, kindSnapshot, 0, []byte{1, 2, 3})
	if _, _, err := decodeSnapshot(short); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("short body: err = %v", err)
	}
}

func TestFormatValue(t *testing.T) {
	if v, err := decodeFormat(encodeFormat(formatVersion)); err != nil || v != formatVersion {
		t.Fatalf("got %d, %v", v, err)
	}
	for _, b := range [][]byte{nil, {0x80}, {1, 0}} {
		if _, err := decodeFormat(b); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("decodeFormat(%x) err = %v", b, err)
		}
	}
}

// FuzzDecodeRecord feeds arbitrary bytes to the record decoder: it must not
// panic, and whatever it accepts must re-encode to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(uint64(1), encodeRecord(1, []byte("delta")))
	f.Add(uint64(2), encodeRecord(2, nil))
	f.Add(uint64(3), []byte{kindRecord, 0x05, 0, 0, 0, 0, 'a'})
	f.Add(uint64(0), []byte{})
	f.Fuzz(func(t *testing.T, seq uint64, b []byte) {
		rec, err := decodeRecord(Seq(seq), b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error not wrapping ErrCorrupt: %v", err)
			}
			return
		}
		if again := encodeRecord(Seq(seq), rec); !bytes.Equal(again, b) {
			t.Fatalf("accepted %x but re-encodes to %x", b, again)
		}
	})
}

// FuzzDecodeSnapshot does the same for snapshot and meta frames.
func FuzzDecodeSnapshot(f *testing.F) {
	f.Add(encodeSnapshot([]byte("state"), 10))
	f.Add(encodeSnapshot(nil, 0))
	f.Add(encodeMeta([]byte("v")))
	f.Add([]byte{kindSnapshot, 0x08})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, upTo, err := decodeSnapshot(b)
		if err == nil {
			if again := encodeSnapshot(st, upTo); !bytes.Equal(again, b) {
				t.Fatalf("accepted %x but re-encodes to %x", b, again)
			}
		} else if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error not wrapping ErrCorrupt: %v", err)
		}
		if v, err := decodeMeta("k", b); err == nil {
			if again := encodeMeta(v); !bytes.Equal(again, b) {
				t.Fatalf("meta accepted %x but re-encodes to %x", b, again)
			}
		}
		_, _ = decodeFormat(b)
	})
}
