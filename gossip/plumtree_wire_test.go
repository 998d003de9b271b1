package gossip

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestMessageRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		msg  Message
	}{
		{"gossip", Message{Type: MsgGossip, Payload: []byte("batch"), Round: 7, Tree: TreeOf("o")}},
		{"gossip round 0 tree 0", Message{Type: MsgGossip, Payload: []byte{0}}},
		{"ihave", Message{Type: MsgIHave, IDs: []MessageID{{1}, {2}}, Rounds: []uint32{0, 5}, Trees: []TreeKey{1, 1 << 63}}},
		{"graft", Message{Type: MsgGraft, IDs: []MessageID{{3}}, Trees: []TreeKey{7}}},
		{"graft without ids", Message{Type: MsgGraft, Trees: []TreeKey{7, 8}}},
		{"prune", Message{Type: MsgPrune, Trees: []TreeKey{TreeOf("o")}}},
		{"neighbor", Message{Type: MsgNeighbor}},
		{"disconnect", Message{Type: MsgDisconnect}},
		{"neighbor-ack", Message{Type: MsgNeighborAck}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := EncodeMessage(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeMessage(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.msg) {
				t.Fatalf("round trip: got %+v, want %+v", got, tt.msg)
			}
		})
	}
}

func TestDecodeMessageRejects(t *testing.T) {
	enc := func(w wireMessage) []byte {
		b, err := wireEnc.Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"garbage", []byte{0xff, 0x00}},
		{"version 1", enc(wireMessage{V: 1, T: uint8(MsgNeighbor)})},
		{"version 3", enc(wireMessage{V: 3, T: uint8(MsgNeighbor)})},
		{"version 0", enc(wireMessage{T: uint8(MsgNeighbor)})},
		{"prune without trees", enc(wireMessage{V: WireVersion, T: uint8(MsgPrune)})},
		{"graft without trees", enc(wireMessage{V: WireVersion, T: uint8(MsgGraft), IDs: [][]byte{make([]byte, 16)}})},
		{"empty graft", enc(wireMessage{V: WireVersion, T: uint8(MsgGraft)})},
		{"unknown type", enc(wireMessage{V: WireVersion, T: 99})},
		{"gossip without payload", enc(wireMessage{V: WireVersion, T: uint8(MsgGossip)})},
		{"ihave without rounds", enc(wireMessage{V: WireVersion, T: uint8(MsgIHave), IDs: [][]byte{make([]byte, 16)}, Trees: []uint64{1}})},
		{"short id", enc(wireMessage{V: WireVersion, T: uint8(MsgGraft), IDs: [][]byte{{1, 2}}, Trees: []uint64{1}})},
		{"prune with payload", enc(wireMessage{V: WireVersion, T: uint8(MsgPrune), Payload: []byte{1}, Trees: []uint64{1}})},
		{"neighbor with tree", enc(wireMessage{V: WireVersion, T: uint8(MsgNeighbor), Tree: 3})},
		{"unknown field", []byte{0xa3, 0x01, 0x02, 0x02, 0x04, 0x18, 0x63, 0x00}},
		{"oversized", make([]byte, maxWireSize+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeMessage(tt.in); !errors.Is(err, errWire) {
				t.Fatalf("DecodeMessage(%x...) = %v, want a bad-message error", tt.in[:min(len(tt.in), 16)], err)
			}
		})
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range []Message{
		{Type: MsgGossip, Payload: []byte("batch"), Round: 7, Tree: 5},
		{Type: MsgIHave, IDs: []MessageID{{1}, {2}}, Rounds: []uint32{0, 5}, Trees: []TreeKey{5, 6}},
		{Type: MsgGraft, IDs: []MessageID{{3}}, Trees: []TreeKey{5}},
		{Type: MsgPrune, Trees: []TreeKey{5}},
		{Type: MsgNeighbor},
		{Type: MsgDisconnect},
		{Type: MsgNeighborAck},
	} {
		b, err := EncodeMessage(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xa1, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes, and decodes to the same message.
		b2, err := EncodeMessage(m)
		if err != nil {
			t.Fatalf("decoded %+v does not re-encode: %v", m, err)
		}
		m2, err := DecodeMessage(b2)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-decode: %+v %v, want %+v", m2, err, m)
		}
		// And a state machine accepts it without panicking.
		p, _ := NewPlumtree(PlumtreeConfig{Self: "self"})
		p.SetPeers([]string{"peer"})
		if d, ok := p.Receive("peer", m); ok {
			if !bytes.Equal(d.Payload, m.Payload) {
				t.Fatal("delivered payload differs")
			}
			p.Validated(d.ID, true)
		}
		p.Tick()
	})
}

// BenchmarkMessageCodec encodes and decodes a GOSSIP message carrying a
// 1 KiB payload and an IHAVE with 64 IDs.
func BenchmarkMessageCodec(b *testing.B) {
	ihave := Message{Type: MsgIHave}
	for i := range 64 {
		ihave.IDs = append(ihave.IDs, MessageID{byte(i)})
		ihave.Rounds = append(ihave.Rounds, uint32(i))
		ihave.Trees = append(ihave.Trees, TreeKey(i)<<40)
	}
	for _, tc := range []struct {
		name string
		msg  Message
	}{
		{"gossip-1KiB", Message{Type: MsgGossip, Payload: bytes.Repeat([]byte{7}, 1024), Round: 3, Tree: TreeOf("origin")}},
		{"ihave-64", ihave},
	} {
		b.Run(tc.name, func(b *testing.B) {
			enc, _ := EncodeMessage(tc.msg)
			b.ReportAllocs()
			defer b.ReportMetric(float64(len(enc)), "wire-bytes")
			for b.Loop() {
				e, err := EncodeMessage(tc.msg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := DecodeMessage(e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
