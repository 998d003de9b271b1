package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/miekg/dns"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/gossip"
	"github.com/peerd/peerd/identity"
	"github.com/peerd/peerd/peer"
	"github.com/peerd/peerd/transport"
)

// Security scenarios on real processes in network namespaces: nodes
// without a valid certificate, revoked nodes, forged intentions and
// records, and garbage sent to every port. Forged records are built in Go
// (crdt + identity) and pushed over a real QUIC connection by an
// "injector" that speaks the peer protocol (transport KindSync streams,
// Plumtree GOSSIP messages) from its own namespace.

// injector is a hand-made peer: a transport with some key and chain, and a
// replica signing records with that key.
type injector struct {
	t       testing.TB
	key     ed25519.PrivateKey
	id      string
	chain   []byte
	tr      *transport.Transport
	replica *crdt.Replica
}

type keySigner struct{ key ed25519.PrivateKey }

func (s keySigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// newInjector starts a transport on addr inside namespace ns.
func newInjector(t testing.TB, ns, addr string, key ed25519.PrivateKey, chain []byte) *injector {
	t.Helper()
	pub := key.Public().(ed25519.PublicKey)
	inj := &injector{t: t, key: key, id: identity.NodeID(pub), chain: chain}
	tr, err := transport.New(transport.Config{
		Key: key, Chain: chain, ListenAddr: addr + ":0",
		VerifyPeer: func(ed25519.PublicKey, []byte) error { return nil },
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := inNetns(ns, func() error { return tr.Start(context.Background()) }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	inj.tr = tr
	r, err := crdt.NewReplica(inj.id, keySigner{key}, crdt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	inj.replica = r
	return inj
}

// nodeKeyOf returns an agent's public key from its node ID.
func nodeKeyOf(t testing.TB, a *nsAgent) ed25519.PublicKey {
	t.Helper()
	id := a.stat("agent", "node_id")
	pub, err := identity.ParseNodeID(id)
	if err != nil {
		t.Fatalf("node id of %s (%q): %v", a.name, id, err)
	}
	return pub
}

// send opens a KindSync stream with meta to a and writes msg.
func (inj *injector) send(a *nsAgent, meta []byte, msg []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ap := netip.MustParseAddrPort(a.ip + ":8300")
	s, _, err := inj.tr.OpenStream(ctx, ap, nodeKeyOf(inj.t, a), transport.Header{Kind: transport.KindSync, Meta: meta})
	if err != nil {
		return err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(5 * time.Second))
	if err := transport.WriteMsg(s, msg); err != nil {
		return err
	}
	s.CloseWrite()
	// Wait for the peer to finish with the stream (it closes or resets).
	io.Copy(io.Discard, s)
	return nil
}

// gossipDelta sends entries as one Plumtree GOSSIP message to a.
func (inj *injector) gossipDelta(a *nsAgent, entries ...*crdt.Delta) error {
	var d crdt.Delta
	for _, e := range entries {
		d.Entries = append(d.Entries, e.Entries...)
	}
	payload, err := crdt.EncodeDelta(&d)
	if err != nil {
		return err
	}
	msg, err := gossip.EncodeMessage(gossip.Message{Type: gossip.MsgGossip, Payload: payload, Tree: gossip.TreeOf(inj.id)})
	if err != nil {
		return err
	}
	return inj.send(a, []byte{1}, msg) // 1: syncGossip in peer/mesh.go
}

// nodeRecord is the injector's signed node record (it carries its chain).
func (inj *injector) nodeRecord(name, addr string) *crdt.Delta {
	d, err := inj.replica.PutNode(crdt.Node{Name: name, Address: addr, Cert: inj.chain}, time.Now())
	if err != nil {
		inj.t.Fatal(err)
	}
	return d
}

func readKey(t testing.TB, path string) ed25519.PrivateKey {
	t.Helper()
	k, err := identity.ReadPrivateKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func readChain(t testing.TB, path string) []byte {
	t.Helper()
	c, err := identity.ReadChainFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// acceptAll is an Authorizer that lets a forger put any intention into its
// own replica (the receivers must refuse it).
type acceptAll struct{ in crdt.Intention }

func (acceptAll) VerifyOrigin(string, []byte, []byte) error        { return nil }
func (acceptAll) MayPublishService(string, string) bool            { return true }
func (acceptAll) MayWriteKV(string, string) bool                   { return true }
func (x acceptAll) VerifyIntention([]byte) (crdt.Intention, error) { return x.in, nil }
func (acceptAll) VerifyRevocation([]byte) error                    { return nil }

// trusts reports whether a lists name as an alive member.
func trusts(a *nsAgent, name string) (bool, error) {
	ms, err := a.members()
	if err != nil {
		return false, err
	}
	for _, m := range ms {
		if m.Name == name && m.Status == memberAlive {
			return true, nil
		}
	}
	return false, nil
}

// TestSecurityUntrustedNodes: a node certified by another root and a node
// that is its own root cannot join, read, or inject.
func TestSecurityUntrustedNodes(t *testing.T) {
	nm := newNetMesh(t)
	all := nm.startN(3)
	all[0].kvPut("sec/secret", "legit")

	otherRoot := filepath.Join(nm.dir, "other-root.key")
	nm.cli("keygen", "-out", otherRoot)
	fkey, fcert := nm.nodeIdentity("foreign", otherRoot)
	foreign := nm.start("foreign", nsOpts{key: fkey, cert: fcert, root: otherRoot + ".pub", join: []string{"n1"}})
	selfKey := filepath.Join(nm.dir, "selfroot.key")
	nm.cli("keygen", "-out", selfKey)
	selfRooted := nm.start("selfroot", nsOpts{key: selfKey, root: selfKey + ".pub", join: []string{"n1"}})
	rogues := []*nsAgent{foreign, selfRooted}

	for _, r := range rogues {
		if err := r.kvPut("sec/secret", "overwritten-by-"+r.name); err != nil {
			t.Fatal(err)
		}
		if err := r.kvPut("sec/from-"+r.name, "x"); err != nil {
			t.Fatal(err)
		}
		if err := r.registerService("evil-"+r.name, "web", 80); err != nil {
			t.Fatal(err)
		}
	}
	// Direct injection over QUIC with each rogue's key and chain.
	var refusedStreams, attempts int
	for _, r := range rogues {
		var chain []byte
		if r.cert != "" {
			chain = readChain(t, r.cert)
		}
		inj := newInjector(t, r.ns, r.ip, readKey(t, r.key), chain)
		kv, err := inj.replica.KVPut("sec/injected-"+r.name, []byte("x"), 0, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range all {
			attempts++
			if err := inj.gossipDelta(p, inj.nodeRecord(r.name, r.ip), kv); err != nil {
				refusedStreams++
			} else {
				t.Errorf("%s accepted a stream from %s (untrusted)", p.name, r.name)
			}
		}
	}
	// A fresh legitimate write gives the mesh a full round; the rogues'
	// writes must never arrive, and they must not have read ours.
	all[1].kvPut("sec/marker", "after")
	waitFor(t, 30*time.Second, func() error {
		for _, p := range all {
			if v, err := p.kvGetRaw("sec/marker"); err != nil || v != "after" {
				return fmt.Errorf("%s: marker %q %v", p.name, v, err)
			}
		}
		return nil
	})
	// Wait a few anti-entropy rounds (1 s each) past the marker: the
	// condition is time-based because we check that something never happens.
	time.Sleep(3 * time.Second)
	for _, p := range all {
		if v, _ := p.kvGetRaw("sec/secret"); v != "legit" {
			t.Errorf("%s: sec/secret = %q", p.name, v)
		}
		for _, r := range rogues {
			if _, err := p.kvGetRaw("sec/from-" + r.name); err == nil {
				t.Errorf("%s has %s's write", p.name, r.name)
			}
			if _, err := p.kvGetRaw("sec/injected-" + r.name); err == nil {
				t.Errorf("%s has %s's injected write", p.name, r.name)
			}
			if ok, _ := trusts(p, r.name); ok {
				t.Errorf("%s lists %s as alive", p.name, r.name)
			}
		}
		ids, _ := p.serviceIDs("web")
		if len(ids) > 0 {
			t.Errorf("%s lists rogue web instances %v", p.name, ids)
		}
	}
	for _, r := range rogues {
		if _, err := r.kvGetRaw("sec/marker"); err == nil {
			t.Errorf("%s read the mesh's data", r.name)
		}
	}
	figure(t, "untrusted_nodes", "rogues", "other-root,self-root", "writes_tried", 6,
		"quic_injections", attempts, "quic_refused", refusedStreams, "accepted", 0)
}

// TestSecurityRevocation: a revoked node is cut off from gossip (not an
// alive member, its writes refused) and from QUIC (handshakes refused, so
// no sync or data-plane stream) at every peer within 5 s.
func TestSecurityRevocation(t *testing.T) {
	nm := newNetMesh(t)
	all := nm.startN(4)
	victim := all[3]
	others := all[:3]
	victim.kvPut("rev/before", "x")
	waitFor(t, 30*time.Second, func() error { return hasKeys(others, "rev/", map[string]bool{"rev/before": true}) })
	// A second process holding the victim's key, as the data plane would.
	inj := newInjector(t, victim.ns, victim.ip, readKey(t, victim.key), readChain(t, victim.cert))
	for _, p := range others {
		if err := inj.send(p, []byte{3}, nil); err != nil { // 3: syncHello
			t.Fatalf("before revocation, %s refused the victim's key: %v", p.name, err)
		}
	}

	rev := filepath.Join(nm.dir, "victim.rev")
	nm.cli("revoke", "-ca-key", nm.root, "-subject", victim.key+".pub", "-out", rev)
	body := readFile(t, rev)
	submitted := time.Now()
	if _, _, err := all[0].do(http.MethodPut, "/v1/agent/peerd/revoke", string(body)); err != nil {
		t.Fatal(err)
	}
	cut := map[string]time.Duration{}
	waitFor(t, 30*time.Second, func() error {
		for _, p := range others {
			if _, ok := cut[p.name]; ok {
				continue
			}
			alive, err := trusts(p, victim.name)
			if err != nil || alive {
				continue
			}
			// The open QUIC connection (made before the revocation) is
			// closed by the peer, and new handshakes are refused: a stream
			// fails either way. No ClosePeer on our side: the peer must
			// cut the connection itself.
			if err := inj.send(p, []byte{3}, nil); err == nil {
				continue
			}
			cut[p.name] = time.Since(submitted)
		}
		if len(cut) < len(others) {
			return fmt.Errorf("cut off at %d of %d peers: %v", len(cut), len(others), cut)
		}
		return nil
	})
	var worst time.Duration
	for _, d := range cut {
		worst = max(worst, d)
	}
	victim.kvPut("rev/after", "x")
	all[0].kvPut("rev/marker", "x")
	waitFor(t, 30*time.Second, func() error { return hasKeys(others, "rev/", map[string]bool{"rev/marker": true}) })
	time.Sleep(2 * time.Second) // anti-entropy rounds: checking something never arrives
	for _, p := range others {
		if _, err := p.kvGetRaw("rev/after"); err == nil {
			t.Errorf("%s accepted the revoked node's write", p.name)
		}
	}
	figure(t, "revocation", "peers", 4, "cut_off_everywhere_after", worst.Round(10*time.Millisecond), "per_peer", fmt.Sprint(cut))
	if worst > 5*time.Second {
		t.Errorf("revocation took %v to cut the node off everywhere (target 5 s)", worst)
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSecurityIntentions: a forged intention (bad signature), a replayed
// older one, and one signed by a key without the right are refused by the
// API of every peer and, pushed as records over QUIC, by every replica.
func TestSecurityIntentions(t *testing.T) {
	nm := newNetMesh(t)
	all := nm.startN(3)
	rootKey := readKey(t, nm.root)

	sign := func(in crdt.Intention, key ed25519.PrivateKey) []byte {
		b, err := peer.SignIntention(in, key, nil)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	put := func(p *nsAgent, signed []byte) (int, error) {
		body := fmt.Sprintf(`{"Signed":%q}`, base64.StdEncoding.EncodeToString(signed))
		_, code, err := p.do(http.MethodPut, "/v1/connect/intentions/exact?source=web&destination=db", body)
		return code, err
	}
	action := func(p *nsAgent) string {
		b, err := p.get("/v1/connect/intentions/exact?source=web&destination=db")
		if err != nil {
			return ""
		}
		s := string(b)
		switch {
		case strings.Contains(s, `"Action":"allow"`):
			return "allow"
		case strings.Contains(s, `"Action":"deny"`):
			return "deny"
		}
		return s
	}
	id := peer.NewIntentionID()
	v1 := crdt.Intention{ID: id, SourceName: "web", DestinationName: "db", Action: "allow", Version: 1}
	v2 := crdt.Intention{ID: id, SourceName: "web", DestinationName: "db", Action: "deny", Version: 2}
	v1Signed := sign(v1, rootKey)
	if code, err := put(all[0], sign(v2, rootKey)); err != nil {
		t.Fatalf("legit intention refused (%d): %v", code, err)
	}
	waitFor(t, 30*time.Second, func() error {
		for _, p := range all {
			if a := action(p); a != "deny" {
				return fmt.Errorf("%s: action %q", p.name, a)
			}
		}
		return nil
	})

	// Forged: a valid envelope of "allow" v3 with its signature altered.
	env, err := identity.Seal("peerd/intention/v1", mustCBORIntention(t, crdt.Intention{ID: id, SourceName: "web", DestinationName: "db", Action: "allow", Version: 3}), rootKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	env.Signature[0] ^= 0xff
	forged, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Unauthorized: a node key whose certificate lacks -intentions (its
	// own identity: reusing a running agent's key would reuse its dots).
	fkey, fcert := nm.nodeIdentity("forger", nm.root)
	nkey := readKey(t, fkey)
	nchain, _ := identity.ReadChainFile(fcert)
	v4 := crdt.Intention{ID: id, SourceName: "web", DestinationName: "db", Action: "allow", Version: 4}
	unauth, err := peer.SignIntention(v4, nkey, nchain)
	if err != nil {
		t.Fatal(err)
	}

	var apiRefused, apiTried int
	for _, p := range all {
		for _, c := range []struct {
			name   string
			signed []byte
		}{{"forged", forged}, {"unauthorized", unauth}, {"replayed-older", v1Signed}} {
			apiTried++
			code, err := put(p, c.signed)
			if err != nil {
				apiRefused++
				t.Logf("%s refused the %s intention: %d", p.name, c.name, code)
			} else if c.name != "replayed-older" {
				t.Errorf("%s accepted the %s intention", p.name, c.name)
			}
		}
	}
	// The same documents pushed as replica records over QUIC by a peer
	// with a valid node certificate (but no right to sign intentions).
	ns, addr := nm.addHost("forger", 200)
	inj := newInjector(t, ns, addr, nkey, readChain(t, fcert))
	deltas := []*crdt.Delta{inj.nodeRecord("forger", addr)}
	for _, c := range []struct {
		signed []byte
		in     crdt.Intention
	}{{v1Signed, v1}, {forged, crdt.Intention{ID: id, SourceName: "web", DestinationName: "db", Action: "allow", Version: 3}}, {unauth, v4}} {
		d, err := inj.replica.PutIntention(c.signed, acceptAll{c.in}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		deltas = append(deltas, d)
	}
	rejectedBefore := map[string]int{}
	for _, p := range all {
		rejectedBefore[p.name] = p.statInt("replica", "rejected_entries")
	}
	for _, p := range all {
		for _, d := range deltas[1:] {
			if err := inj.gossipDelta(p, deltas[0], d); err != nil {
				t.Fatalf("pushing to %s: %v", p.name, err)
			}
		}
	}
	all[0].kvPut("int/marker", "x")
	waitFor(t, 30*time.Second, func() error { return hasKeys(all, "int/", map[string]bool{"int/marker": true}) })
	time.Sleep(2 * time.Second) // anti-entropy rounds: checking something never arrives
	var rejected int
	for _, p := range all {
		if a := action(p); a != "deny" {
			t.Errorf("%s: the intention became %q", p.name, a)
		}
		rejected += p.statInt("replica", "rejected_entries") - rejectedBefore[p.name]
	}
	figure(t, "intentions", "peers", 3, "api_writes_tried", apiTried, "api_refused", apiRefused,
		"quic_records_pushed", (len(deltas)-1)*len(all), "replica_rejected_entries", rejected, "accepted", 0)
}

// TestSecurityServiceNames: a node whose certificate allows only "web-*"
// is refused a "db" registration locally, and a hand-made record for "db"
// signed with its key is refused by every peer (a "web-1" record pushed
// the same way is accepted: the path works).
func TestSecurityServiceNames(t *testing.T) {
	nm := newNetMesh(t)
	all := nm.startN(3)
	key := filepath.Join(nm.dir, "webonly.key")
	cert := filepath.Join(nm.dir, "webonly.cert")
	nm.cli("keygen", "-out", key)
	nm.cli("cert", "issue", "-ca-key", nm.root, "-subject", key+".pub", "-name", "webonly",
		"-services", "web-*", "-kv", "web/", "-ttl", "24h", "-out", cert)
	w := nm.start("webonly", nsOpts{key: key, cert: cert, join: []string{"n1"}})
	nm.waitAllAlive(append(all, w), 60*time.Second)

	_, code, err := w.do(http.MethodPut, "/v1/agent/service/register", `{"ID":"db-1","Name":"db","Port":5432}`)
	if err == nil {
		t.Fatalf("registering db with a web-* certificate succeeded")
	}
	t.Logf("local refusal: %d %v", code, err)
	if code < 400 || code >= 500 {
		t.Errorf("local refusal: want a 4xx, got %d", code)
	}
	if err := w.registerService("web-a", "web-a", 80); err != nil {
		t.Fatalf("allowed registration refused: %v", err)
	}

	// Hand-made records signed by another node certified for "web-*" only,
	// pushed to every legit peer from its own namespace. (Its own key: a
	// second user of webonly's key would reuse webonly's dots, which peers
	// drop as duplicates before any check.)
	fkey := filepath.Join(nm.dir, "forger.key")
	fcert := filepath.Join(nm.dir, "forger.cert")
	nm.cli("keygen", "-out", fkey)
	nm.cli("cert", "issue", "-ca-key", nm.root, "-subject", fkey+".pub", "-name", "forger",
		"-services", "web-*", "-kv", "web/", "-ttl", "24h", "-out", fcert)
	ns, addr := nm.addHost("forger", 200)
	inj := newInjector(t, ns, addr, readKey(t, fkey), readChain(t, fcert))
	node := inj.nodeRecord("forger", addr)
	bad, err := inj.replica.PutService(crdt.Service{ID: "db-forged", Name: "db", Port: 5432}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	good, err := inj.replica.PutService(crdt.Service{ID: "web-forged", Name: "web-1", Port: 80}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]int{}
	for _, p := range all {
		before[p.name] = p.statInt("replica", "rejected_entries")
	}
	for _, p := range all {
		if err := inj.gossipDelta(p, node, bad, good); err != nil {
			t.Fatalf("push to %s: %v", p.name, err)
		}
	}
	waitFor(t, 30*time.Second, func() error {
		for _, p := range all {
			ids, err := p.serviceIDs("web-1")
			if err != nil {
				return err
			}
			if !ids["web-forged"] {
				return fmt.Errorf("%s does not have the allowed web-1 record yet", p.name)
			}
		}
		return nil
	})
	var rejected int
	for _, p := range all {
		ids, _ := p.serviceIDs("db")
		if len(ids) > 0 {
			t.Errorf("%s lists db instances %v", p.name, ids)
		}
		d := p.statInt("replica", "rejected_entries") - before[p.name]
		if d < 1 {
			t.Errorf("%s: rejected_entries did not grow", p.name)
		}
		rejected += d
	}
	figure(t, "service_names", "local_refusal_status", code, "forged_records_pushed", len(all),
		"rejected_entries", rejected, "control_accepted", len(all), "accepted_forged", 0)
}

// TestSecurityGarbage sends malformed, truncated and oversized packets to
// the gossip (UDP+TCP), QUIC, HTTP and DNS ports of one agent, and
// malformed sync streams over an authenticated QUIC connection: the agent
// stays up, answers, and keeps converging.
func TestSecurityGarbage(t *testing.T) {
	nm := newNetMesh(t)
	all := nm.startN(3)
	target := all[0]
	ns, addr := nm.addHost("attacker", 201)
	rnd := func(n int) []byte {
		b := make([]byte, n)
		rand.Read(b)
		return b
	}
	sent := map[string]int{}
	udp := func(port int, payloads ...[]byte) {
		c, err := dialIn(context.Background(), ns, "udp", fmt.Sprintf("%s:%d", target.ip, port))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, p := range payloads {
			c.Write(p)
			sent[fmt.Sprintf("udp/%d", port)]++
		}
	}
	tcp := func(port int, payloads ...[]byte) {
		for _, p := range payloads {
			c, err := dialIn(context.Background(), ns, "tcp", fmt.Sprintf("%s:%d", target.ip, port))
			if err != nil {
				t.Fatalf("tcp %d: %v", port, err)
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			c.Write(p)
			io.Copy(io.Discard, io.LimitReader(c, 1<<20))
			c.Close()
			sent[fmt.Sprintf("tcp/%d", port)]++
		}
	}
	var junk [][]byte
	for _, n := range []int{0, 1, 2, 3, 7, 16, 100, 512, 1200, 1400, 9000, 65000} {
		junk = append(junk, rnd(n))
	}
	// Messages whose first byte is each memberlist message type, truncated.
	var typed [][]byte
	for ty := 0; ty < 32; ty++ {
		typed = append(typed, append([]byte{byte(ty)}, rnd(int(ty)*3)...))
	}
	big := make([]byte, 4)
	binary.BigEndian.PutUint32(big, 0xfffffff0)
	udp(8301, append(junk, typed...)...)
	tcp(8301, append(append(junk[:8], typed[:16]...), append([]byte{1}, big...), append([]byte{13}, big...))...)
	// QUIC: random datagrams and a long-header "Initial" with garbage.
	initial := append([]byte{0xc3, 0, 0, 0, 1, 8}, rnd(1250)...)
	udp(8300, append(junk, initial, []byte{0xc0}, []byte{0x40, 1, 2})...)
	// HTTP: garbage, truncated and oversized requests.
	tcp(8500, rnd(1000), []byte("GET /v1/kv/x HTTP/1.1\r\nHost"), []byte("PUT /v1/kv/big HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nabc"),
		[]byte("GET /"+strings.Repeat("a", 2<<20)+" HTTP/1.1\r\n\r\n"), []byte("\x00\x01\x02 / HTTP/9.9\r\n\r\n"))
	// DNS: junk, a truncated query, a query with absurd counts; over TCP a
	// length prefix larger than the body.
	q := new(dns.Msg)
	q.SetQuestion("web.service.consul.", dns.TypeSRV)
	wire, _ := q.Pack()
	absurd := append([]byte(nil), wire...)
	absurd[4], absurd[5] = 0xff, 0xff
	udp(8600, append(junk[:11], wire[:len(wire)/2], absurd, wire[:5])...)
	tcp(8600, []byte{0xff, 0xff, 1, 2, 3}, append([]byte{0, byte(len(wire))}, wire[:3]...), rnd(300))

	// Malformed sync streams from an authenticated peer (the attacker got a
	// valid certificate): garbage Plumtree messages, garbage anti-entropy
	// requests, an unknown operation, a too-long meta, an oversized frame.
	akey, acert := nm.nodeIdentity("attacker", nm.root)
	inj := newInjector(t, ns, addr, readKey(t, akey), readChain(t, acert))
	decodeBefore := target.statInt("dissemination", "decode_errors")
	badBefore := target.statInt("replica", "bad_payloads")
	streams := 0
	for _, m := range [][]byte{rnd(10), rnd(1000), {}, {0xa1, 0x01, 0x01}} {
		for _, op := range [][]byte{{1}, {2}, {4}, {99}, {1, 2}} {
			inj.send(target, op, m)
			streams++
		}
	}
	// A GOSSIP message whose payload is not a delta.
	notDelta, _ := gossip.EncodeMessage(gossip.Message{Type: gossip.MsgGossip, Payload: rnd(200), Tree: gossip.TreeOf(inj.id)})
	inj.send(target, []byte{1}, notDelta)
	streams++
	// An oversized frame: a length prefix far above the limit.
	func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, _, err := inj.tr.OpenStream(ctx, netip.MustParseAddrPort(target.ip+":8300"), nodeKeyOf(t, target), transport.Header{Kind: transport.KindSync, Meta: []byte{1}})
		if err != nil {
			t.Fatal(err)
		}
		s.SetDeadline(time.Now().Add(5 * time.Second))
		s.Write(big)
		s.Write(rnd(1000))
		s.CloseWrite()
		io.Copy(io.Discard, s)
		s.Close()
		streams++
	}()
	sent["quic/sync-streams"] = streams

	// Still alive, answering, and converging.
	for _, p := range all {
		if !p.running() {
			t.Fatalf("%s died:\n%s", p.name, tail(p.Logs(), 30))
		}
	}
	target.kvPut("garbage/after", "ok")
	waitFor(t, 30*time.Second, func() error { return hasKeys(all, "garbage/", map[string]bool{"garbage/after": true}) })
	if _, err := lookupA(target, "n1.node.consul."); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Logf("dns after garbage: %v", err)
	}
	nm.waitAllAlive(all, 30*time.Second)
	total := 0
	for _, n := range sent {
		total += n
	}
	figure(t, "garbage", "inputs_sent", total, "by_port", fmt.Sprint(sent),
		"decode_errors_counted", target.statInt("dissemination", "decode_errors")-decodeBefore,
		"bad_payloads_counted", target.statInt("replica", "bad_payloads")-badBefore, "crashes", 0)
}

// mustCBORIntention encodes an intention as peer.SignIntention does.
func mustCBORIntention(t testing.TB, in crdt.Intention) []byte {
	t.Helper()
	b, err := cbor.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
