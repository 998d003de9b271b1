package crdt

import (
	"testing"
)

func fuzzSeedDeltas(f *testing.F) {
	r, _ := NewReplica("r0", hashSigner{"r0"}, Options{})
	for _, d := range []*Delta{
		mustD(r.KVPut("a", []byte("v"), 1, t0)),
		mustD(r.PutService(Service{ID: "s", Name: "web", Tags: []string{"x"}, Proxy: &Proxy{Upstreams: []Upstream{{DestinationName: "db", LocalBindPort: 9}}}}, t0)),
		mustD(r.KVDelete("a", t0)),
		{Horizon: map[string]Range{"r0": {From: 0, To: 2}}},
	} {
		b, err := EncodeDelta(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x83, 0x01, 0x80, 0xa0})
	f.Add([]byte{})
}

func mustD(d *Delta, err error) *Delta {
	if err != nil {
		panic(err)
	}
	return d
}

// FuzzDecodeDelta decodes untrusted deltas and merges what decodes.
func FuzzDecodeDelta(f *testing.F) {
	fuzzSeedDeltas(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDelta(b)
		if err != nil {
			return
		}
		if _, err := EncodeDelta(d); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		r, _ := NewReplica("fz", hashSigner{"fz"}, Options{})
		_, _ = r.Merge(d, hashAuth{}, t0)
		_ = r.Digest()
		_ = r.DeltaSince(VersionVector{}, 0)
	})
}

// FuzzMergeForged merges deltas whose entries carry valid fake signatures
// over fuzzed headers and bodies: the replica must never panic and must
// stay serializable.
func FuzzMergeForged(f *testing.F) {
	r, _ := NewReplica("r0", hashSigner{"r0"}, Options{})
	d := mustD(r.PutCheck(Check{ID: "c", Status: StatusPassing}, t0))
	f.Add(d.Entries[0].Header, d.Entries[0].Body)
	d = mustD(r.KVPut("k", []byte("v"), 0, t0))
	f.Add(d.Entries[0].Header, d.Entries[0].Body)
	f.Fuzz(func(t *testing.T, hdr, body []byte) {
		h, err := decodeHeader(hdr)
		if err != nil {
			return
		}
		e := Entry{Header: hdr, Sig: fakeSig(h.Origin, signedMessage(hdr)), Body: body}
		r, _ := NewReplica("fz", hashSigner{"fz"}, Options{})
		_, _ = r.Merge(&Delta{Entries: []Entry{e}}, hashAuth{}, t0)
		s, err := r.MarshalState()
		if err != nil {
			t.Fatal(err)
		}
		r2, _ := NewReplica("fz", hashSigner{"fz"}, Options{})
		if err := r2.LoadState(s, hashAuth{}); err != nil {
			t.Fatalf("reload: %v", err)
		}
		if r2.Digest() != r.Digest() {
			t.Fatal("digest changed across a state round trip")
		}
	})
}

// FuzzLoadState feeds untrusted bytes to LoadState.
func FuzzLoadState(f *testing.F) {
	r, _ := NewReplica("r0", hashSigner{"r0"}, Options{})
	_, _ = r.KVPut("a", []byte("v"), 1, t0)
	_, _ = r.PutNode(Node{Name: "n"}, t0)
	b, _ := r.MarshalState()
	f.Add(b)
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, _ := NewReplica("r0", hashSigner{"r0"}, Options{})
		if err := r.LoadState(b, hashAuth{}); err != nil {
			return
		}
		_ = r.KVList("")
		_, _ = r.MarshalState()
		_, _ = r.KVPut("x", nil, 0, t0)
	})
}

// FuzzDecodeRecord decodes record headers and bodies of every kind.
func FuzzDecodeRecord(f *testing.F) {
	r, _ := NewReplica("r0", hashSigner{"r0"}, Options{})
	for _, d := range []*Delta{
		mustD(r.PutNode(Node{Name: "n", Meta: map[string]string{"a": "b"}}, t0)),
		mustD(r.PutNode(Node{Name: "n", Cert: []byte{1}, ConnectCA: []byte{0x30, 0x03, 0x02, 0x01, 0x01}}, t0)),
		mustD(r.PutService(Service{ID: "s", Name: "web", Connect: &Connect{SidecarService: &Service{Name: "p"}}}, t0)),
		mustD(r.PutCheck(Check{ID: "c", Status: StatusWarning}, t0)),
	} {
		f.Add(d.Entries[0].Header)
		f.Add(d.Entries[0].Body)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _, _ = DecodeEntryHeader(b)
		_, _ = DecodeNode(b)
		_, _ = DecodeService(b)
		_, _ = DecodeCheck(b)
		for k := KindNode; k <= KindRevocation; k++ {
			_, _ = decodeBody(k, b)
		}
		var in Intention
		if unmarshal(b, &in) == nil && in.Validate() == nil {
			_ = evaluateIntentions([]Intention{in}, "a", "b", false)
			in.EvaluateHTTP(HTTPRequest{Method: "GET", Path: "/x"})
		}
	})
}
