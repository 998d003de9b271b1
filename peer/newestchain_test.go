package peer

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// newestChainFixture: node P starts with a chain issued by the root R0
// (its node record "node-c0"), writes a value, then is re-certified by an
// operator key O that R0 certified ("node-c1", a two-link chain); node W
// (a root-issued chain) writes R0's revocation of O ("revocation"), which
// cuts P's new chain at the end of its second; P then overwrites the value
// and deletes another ("a-v2", "b-del", stamped after the cut). The
// deltas are P's and W's records by name.
type newestChainFixture struct {
	now     time.Time
	r0      ed25519.PrivateKey
	pPub    ed25519.PublicKey
	chainC0 identity.Chain
	chainC1 identity.Chain
	deltas  map[string]*crdt.Delta
	ordered []string
}

func newNewestChainFixture(t testing.TB) *newestChainFixture {
	t.Helper()
	t0 := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	f := &newestChainFixture{now: t0.Add(10 * time.Second), deltas: map[string]*crdt.Delta{}}
	_, f.r0, _ = ed25519.GenerateKey(rand.Reader)
	opPub, opKey, _ := ed25519.GenerateKey(rand.Reader)
	pPub, pKey, _ := ed25519.GenerateKey(rand.Reader)
	wPub, wKey, _ := ed25519.GenerateKey(rand.Reader)
	f.pPub = pPub
	nb, na := t0.Add(-time.Hour), t0.Add(time.Hour)
	cons := identity.Constraints{KVPrefixes: []string{"cfg/p/"}}
	var err error
	if f.chainC0, err = identity.Issue(f.r0, nil, pPub, "p", cons, nb, na, 1); err != nil {
		t.Fatal(err)
	}
	opChain, err := identity.Issue(f.r0, nil, opPub, "ops", identity.Constraints{KVPrefixes: []string{"cfg/"}, DelegateDepth: 1}, nb, na, 2)
	if err != nil {
		t.Fatal(err)
	}
	if f.chainC1, err = identity.Issue(opKey, opChain, pPub, "p", cons, nb, na, 3); err != nil {
		t.Fatal(err)
	}
	wChain, err := identity.Issue(f.r0, nil, wPub, "w", identity.Constraints{}, nb, na, 4)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := identity.NewRevocation(f.r0, nil, opPub, t0.Add(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	revBlob, err := rev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p, err := crdt.NewReplica(identity.NodeID(pPub), nodeSigner{pKey}, crdt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := crdt.NewReplica(identity.NodeID(wPub), nodeSigner{wKey}, crdt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	wTrust := newTrustBook(identity.NewVerifier(pubOf(f.r0)), func() time.Time { return f.now }, identity.NodeID(wPub))
	for _, step := range []struct {
		name  string
		write func() (*crdt.Delta, error)
	}{
		{"node-w", func() (*crdt.Delta, error) {
			return w.PutNode(crdt.Node{Name: "w", Cert: mustMarshalChain(t, wChain)}, t0)
		}},
		{"node-c0", func() (*crdt.Delta, error) {
			return p.PutNode(crdt.Node{Name: "p", Cert: mustMarshalChain(t, f.chainC0)}, t0)
		}},
		{"a-v1", func() (*crdt.Delta, error) { return p.KVPut("cfg/p/a", []byte("v1"), 0, t0) }},
		{"b-v1", func() (*crdt.Delta, error) { return p.KVPut("cfg/p/b", []byte("v1"), 0, t0) }},
		{"node-c1", func() (*crdt.Delta, error) {
			return p.PutNode(crdt.Node{Name: "p", Cert: mustMarshalChain(t, f.chainC1)}, t0.Add(2*time.Second))
		}},
		{"revocation", func() (*crdt.Delta, error) { return w.AddRevocation(revBlob, wTrust, t0.Add(4*time.Second)) }},
		{"a-v2", func() (*crdt.Delta, error) { return p.KVPut("cfg/p/a", []byte("v2"), 0, t0.Add(6*time.Second)) }},
		{"b-del", func() (*crdt.Delta, error) { return p.KVDelete("cfg/p/b", t0.Add(7*time.Second)) }},
	} {
		d, err := step.write()
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		f.deltas[step.name] = d
		f.ordered = append(f.ordered, step.name)
	}
	return f
}

// agent is a replica and a trust book trusting R0, as an Agent holds them.
func (f *newestChainFixture) agent(t testing.TB) (*crdt.Replica, *trustBook) {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	r, err := crdt.NewReplica(identity.NodeID(pub), nodeSigner{key}, crdt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return r, newTrustBook(identity.NewVerifier(pubOf(f.r0)), func() time.Time { return f.now }, identity.NodeID(pub))
}

// deliver does what an agent does with a delta from a peer (mergeRemote),
// with a change of its statements and when its trust book asks for a sweep
// (watchRevocations).
func (f *newestChainFixture) deliver(t testing.TB, r *crdt.Replica, tb *trustBook, name string) {
	t.Helper()
	deliverAsAgent(t, r, tb, f.deltas[name], f.now, name)
}

func newestChainReads(r *crdt.Replica) string { return kvReads(r, "cfg/p/a", "cfg/p/b") }

// TestNewestNodeRecordDecides: whatever the order in which an agent meets
// P's two chains and the revocation that cuts the newer one, it ends
// judging P by the chain of P's newest node record (the operator-issued
// one, cut): P's overwrite and delete stamped after the cut are dead on
// every agent, reads and digests equal. Before, an agent that met the
// operator-issued chain only after the revocation kept the root-issued
// one, which still verifies, and took them live (docs/SIM.md, "Found by
// these checkers", 6).
func TestNewestNodeRecordDecides(t *testing.T) {
	f := newNewestChainFixture(t)
	const want = "cfg/p/a=true:v1 cfg/p/b=true:v1"
	pID := identity.NodeID(f.pPub)
	var ref *crdt.Replica
	for _, tc := range []struct {
		name  string
		order []string
		// swept: P's later records were merged live before its newest
		// chain came, and the sweep killed them; it also re-issued, as
		// this agent's own deletes, what they superseded (crdt's
		// RevokeOrigins), which reach the other agents as this agent's
		// records: reads and digest are not compared.
		swept bool
	}{
		{"chain-before-revocation", []string{"node-w", "node-c0", "a-v1", "b-v1", "node-c1", "revocation", "a-v2", "b-del"}, false},
		{"revocation-before-chain", []string{"node-w", "node-c0", "a-v1", "b-v1", "revocation", "node-c1", "a-v2", "b-del"}, false},
		{"newer-chain-first", []string{"node-w", "node-c1", "node-c0", "a-v1", "b-v1", "revocation", "a-v2", "b-del"}, false},
		{"revocation-first", []string{"node-w", "revocation", "node-c1", "node-c0", "a-v1", "b-v1", "a-v2", "b-del"}, false},
		{"late-writes-before-chain", []string{"node-w", "node-c0", "a-v1", "b-v1", "revocation", "a-v2", "b-del", "node-c1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, tb := f.agent(t)
			for _, name := range tc.order {
				f.deliver(t, r, tb, name)
			}
			for _, name := range f.ordered { // anti-entropy: what was dropped comes again
				f.deliver(t, r, tb, name)
			}
			if got := tb.chainOf(pID); got.Hash() != f.chainC1.Hash() {
				t.Errorf("P judged by %d-link chain, want the operator-issued one (its newest node record's)", len(got))
			}
			if tb.admitted(pID) {
				t.Errorf("P still trusted after the revocation of the key that issued its newest chain")
			}
			if tc.swept {
				if v, ok := r.KVGet("cfg/p/a"); ok && string(v.Value) == "v2" {
					t.Errorf("P's overwrite stamped after the cut still live after the sweep")
				}
				return
			}
			if got := newestChainReads(r); got != want {
				t.Errorf("reads %s, want %s", got, want)
			}
			if ref == nil {
				ref = r
			} else if r.Digest() != ref.Digest() {
				t.Errorf("digest differs from the first order's")
			}
		})
	}
}

// TestOlderNodeRecordIgnored: a node record older than the one whose chain
// the trust book holds changes nothing, nor does a newer-looking one its
// node did not sign or whose body is not the one its header names.
func TestOlderNodeRecordIgnored(t *testing.T) {
	f := newNewestChainFixture(t)
	pID := identity.NodeID(f.pPub)
	r, tb := f.agent(t)
	for _, name := range f.ordered {
		f.deliver(t, r, tb, name)
	}
	f.deliver(t, r, tb, "node-c0") // replayed
	if got := tb.chainOf(pID); got.Hash() != f.chainC1.Hash() {
		t.Fatalf("a replayed older node record replaced the newest one's chain")
	}
	// The newest header with the older body: refused before learning.
	c1, c0 := f.deltas["node-c1"].Entries[0], f.deltas["node-c0"].Entries[0]
	swapped := crdt.Entry{Header: c1.Header, Sig: c1.Sig, Body: c0.Body}
	if signedRecord(f.pPub, swapped) {
		t.Fatal("a header with another record's body passed as signed")
	}
	forged := crdt.Entry{Header: c1.Header, Sig: make([]byte, ed25519.SignatureSize), Body: c1.Body}
	if signedRecord(f.pPub, forged) {
		t.Fatal("a record with a bad signature passed as signed")
	}
	if !signedRecord(f.pPub, c1) {
		t.Fatal("P's own node record did not pass as signed")
	}
}

// FuzzSignedRecord: signedRecord decodes a header from a relayed delta
// (untrusted) for its body hash; it must never panic.
func FuzzSignedRecord(f *testing.F) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	r, err := crdt.NewReplica(identity.NodeID(pub), nodeSigner{key}, crdt.Options{})
	if err != nil {
		f.Fatal(err)
	}
	d, err := r.PutNode(crdt.Node{Name: "n"}, time.Unix(1, 0))
	if err != nil {
		f.Fatal(err)
	}
	e := d.Entries[0]
	f.Add(e.Header, e.Sig, e.Body)
	hdr, _ := cbor.Marshal(map[int]any{9: []byte{1, 2}})
	f.Add(hdr, e.Sig, e.Body)
	f.Fuzz(func(t *testing.T, header, sig, body []byte) {
		signedRecord(pub, crdt.Entry{Header: header, Sig: sig, Body: body})
	})
}
