package peer

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/peerd/peerd/identity"
)

func TestEventMatches(t *testing.T) {
	services := func() []eventService {
		return []eventService{
			{ID: "web-1", Name: "web", Tags: []string{"v1", "primary"}},
			{ID: "db", Name: "db", Tags: nil},
		}
	}
	for _, tc := range []struct {
		name               string
		node, service, tag string
		want               bool
		wantErr            bool
	}{
		{name: "no filter", want: true},
		{name: "node matches", node: "^n1$", want: true},
		{name: "node unanchored", node: "n", want: true},
		{name: "node differs", node: "^n2$", want: false},
		{name: "service by name", service: "^web$", want: true},
		{name: "service by ID", service: "^web-1$", want: true},
		{name: "service absent", service: "^cache$", want: false},
		{name: "service and tag", service: "web", tag: "^prim", want: true},
		{name: "tag of another service", service: "^db$", tag: "v1", want: false},
		{name: "tag absent", service: "web", tag: "^v2$", want: false},
		{name: "node and service must both match", node: "^n2$", service: "web", want: false},
		{name: "tag without service", tag: "v1", wantErr: true},
		{name: "bad regexp", node: "(", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := UserEvent{Name: "deploy", NodeFilter: tc.node, ServiceFilter: tc.service, TagFilter: tc.tag}
			got, err := eventMatches(ev, "n1", services)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEventRing(t *testing.T) {
	var es eventState
	evs, ch := es.list()
	if len(evs) != 0 || eventIndex(evs) != 1 {
		t.Fatalf("empty ring: %d events, index %d; want 0 and 1", len(evs), eventIndex(evs))
	}
	es.add(UserEvent{Name: "e0"})
	select {
	case <-ch:
	default:
		t.Fatal("adding an event does not wake a blocked list")
	}
	for i := 1; i < eventRingSize+44; i++ {
		es.add(UserEvent{Name: fmt.Sprintf("e%d", i)})
	}
	evs, ch = es.list()
	if len(evs) != eventRingSize {
		t.Fatalf("%d events kept, want %d", len(evs), eventRingSize)
	}
	if evs[0].Name != "e44" || evs[len(evs)-1].Name != fmt.Sprintf("e%d", eventRingSize+43) {
		t.Fatalf("kept %s..%s, want the last %d oldest first", evs[0].Name, evs[len(evs)-1].Name, eventRingSize)
	}
	select {
	case <-ch:
		t.Fatal("list's channel closed without a new event")
	default:
	}
	if got := filterEvents(evs, "e50", "", "", ""); len(got) != 1 || got[0].Name != "e50" {
		t.Fatalf("name filter: %v", got)
	}
}

// TestEventIndex: the index of a list is what consul/api computes for its
// last event's ID (the watch package compares them).
func TestEventIndex(t *testing.T) {
	var c consul.Event
	for range 100 {
		id, err := newEventID()
		if err != nil {
			t.Fatal(err)
		}
		u := eventUUID(id)
		evs := []UserEvent{{ID: "00000000-0000-4000-8000-000000000001"}, {ID: u}}
		if got, want := eventIndex(evs), c.IDToIndex(u); got != want {
			t.Fatalf("index of %s = %d, consul/api computes %d", u, got, want)
		}
	}
	if got := eventIndex([]UserEvent{{ID: "b54fe110-7af5-cafc-d1fb-afc8ba432b1c"}}); got != 0xb54fe1107af5cafc^0xd1fbafc8ba432b1c {
		t.Fatalf("index of Consul's sample ID = %#x", got)
	}
}

func TestEventDedupe(t *testing.T) {
	var es eventState
	now := time.Unix(1_800_000_000, 0)
	if !es.firstSight("a", now) || es.firstSight("a", now.Add(time.Minute)) {
		t.Fatal("a repeat within the window is not caught")
	}
	if !es.firstSight("a", now.Add(2*eventMaxSkew+time.Second)) {
		t.Fatal("an ID is remembered past 2 × eventMaxSkew")
	}
	for i := range maxSeenEvents + 10 {
		es.firstSight(fmt.Sprint(i), now)
	}
	if len(es.seen) > maxSeenEvents || len(es.order) != len(es.seen) {
		t.Fatalf("%d IDs remembered (%d in order), at most %d", len(es.seen), len(es.order), maxSeenEvents)
	}
}

// eventFixture is a trust book with a root and two certified nodes.
type eventFixture struct {
	now      time.Time
	root     ed25519.PrivateKey
	tb       *trustBook
	keys     map[string]ed25519.PrivateKey // node ID → key
	ids      []string
	services []eventService
}

func newEventFixture(t testing.TB) *eventFixture {
	t.Helper()
	f := &eventFixture{now: time.Unix(1_800_000_000, 0), keys: map[string]ed25519.PrivateKey{}}
	_, f.root, _ = ed25519.GenerateKey(rand.Reader)
	f.tb = newTrustBook(identity.NewVerifier(f.root.Public().(ed25519.PublicKey)), func() time.Time { return f.now }, "self")
	for _, name := range []string{"n1", "n2"} {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		chain, err := identity.Issue(f.root, nil, pub, name, identity.Constraints{},
			f.now.Add(-time.Hour), f.now.Add(time.Hour), 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.tb.learn(pub, mustMarshalChain(t, chain)); err != nil {
			t.Fatal(err)
		}
		id := identity.NodeID(pub)
		f.keys[id] = key
		f.ids = append(f.ids, id)
	}
	return f
}

func (f *eventFixture) env() eventEnv {
	return eventEnv{verify: f.tb.VerifyOrigin, now: f.now, nodeName: "n2",
		services: func() []eventService { return f.services }}
}

func (f *eventFixture) body(t testing.TB, origin, name string) eventBody {
	t.Helper()
	id, err := newEventID()
	if err != nil {
		t.Fatal(err)
	}
	return eventBody{Version: eventWireVersion, ID: id, Origin: origin, Time: f.now.Unix(), Name: name, Payload: []byte("v42")}
}

func (f *eventFixture) wire(t testing.TB, b eventBody, key ed25519.PrivateKey) []byte {
	t.Helper()
	w, err := encodeEvent(b, key)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestEventReceive: only events signed by a currently trusted origin are
// recorded; forged, tampered, unknown, revoked, stale and repeated ones
// are dropped and counted.
func TestEventReceive(t *testing.T) {
	f := newEventFixture(t)
	var es eventState
	n1 := f.ids[0]

	good := f.body(t, n1, "deploy")
	ev, err := es.receive(f.wire(t, good, f.keys[n1]), 7, f.env())
	if err != nil {
		t.Fatalf("a good event: %v", err)
	}
	if ev.Name != "deploy" || string(ev.Payload) != "v42" || ev.LTime != 7 || ev.Version != 1 || ev.ID != eventUUID(good.ID) {
		t.Fatalf("recorded %+v", ev)
	}
	if _, err := es.receive(f.wire(t, good, f.keys[n1]), 8, f.env()); !errors.Is(err, errEventDuplicate) {
		t.Fatalf("the same event again: %v, want a duplicate", err)
	}

	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	strangerID := identity.NodeID(stranger.Public().(ed25519.PublicKey))
	tampered := f.wire(t, f.body(t, n1, "deploy"), f.keys[n1])
	tampered[bytes.Index(tampered, []byte("v42"))+2] = '3'
	stale := f.body(t, n1, "old")
	stale.Time = f.now.Add(-eventMaxSkew - time.Minute).Unix()

	for _, tc := range []struct {
		name string
		wire []byte
		want error // nil: a rejection
	}{
		{name: "forged: another key signs as n1", wire: f.wire(t, f.body(t, n1, "deploy"), stranger)},
		{name: "forged: n2 signs as n1", wire: f.wire(t, f.body(t, n1, "deploy"), f.keys[f.ids[1]])},
		{name: "tampered payload", wire: tampered},
		{name: "unknown origin", wire: f.wire(t, f.body(t, strangerID, "deploy"), stranger)},
		{name: "garbage", wire: []byte("\xa2\x01\x40\x02\x40")},
		{name: "stale", wire: f.wire(t, stale, f.keys[n1]), want: errEventStale},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := es.stats.Rejected.Load()
			_, err := es.receive(tc.wire, 9, f.env())
			if err == nil {
				t.Fatal("recorded")
			}
			if tc.want != nil {
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				return
			}
			if es.stats.Rejected.Load() != before+1 {
				t.Fatalf("not counted as rejected: %v", err)
			}
		})
	}

	// Filters: recorded only where they match (this is n2).
	f.services = []eventService{{ID: "api", Name: "api", Tags: []string{"blue"}}}
	for _, tc := range []struct {
		node, service, tag string
		want               bool
	}{
		{node: "^n2$", want: true},
		{node: "^n3$"},
		{service: "^api$", tag: "blue", want: true},
		{service: "^web$"},
	} {
		b := f.body(t, n1, "filtered")
		b.NodeFilter, b.ServiceFilter, b.TagFilter = tc.node, tc.service, tc.tag
		_, err := es.receive(f.wire(t, b, f.keys[n1]), 10, f.env())
		if got := err == nil; got != tc.want || !tc.want && !errors.Is(err, errEventFiltered) {
			t.Errorf("filters %+v: err = %v, want recorded %v", tc, err, tc.want)
		}
	}

	// Revoked: n1's key is revoked by the root; its next event is refused.
	rev, err := identity.NewRevocation(f.root, nil, f.keys[n1].Public().(ed25519.PublicKey), f.now)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := rev.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.tb.VerifyRevocation(signed); err != nil {
		t.Fatal(err)
	}
	before := es.stats.Rejected.Load()
	if _, err := es.receive(f.wire(t, f.body(t, n1, "after-revocation"), f.keys[n1]), 11, f.env()); err == nil || es.stats.Rejected.Load() != before+1 {
		t.Fatalf("an event of a revoked origin: err = %v, rejected %d → %d", err, before, es.stats.Rejected.Load())
	}
	// n2 is still trusted.
	if _, err := es.receive(f.wire(t, f.body(t, f.ids[1], "from-n2"), f.keys[f.ids[1]]), 12, f.env()); err != nil {
		t.Fatalf("n2 after n1's revocation: %v", err)
	}

	evs, _ := es.list()
	var names []string
	for _, e := range evs {
		names = append(names, e.Name)
	}
	if got := strings.Join(names, ","); got != "deploy,filtered,filtered,from-n2" {
		t.Fatalf("recorded %s", got)
	}
}

func TestEventWireLimits(t *testing.T) {
	f := newEventFixture(t)
	n1 := f.ids[0]
	b := f.body(t, n1, "big")
	b.Payload = bytes.Repeat([]byte{'p'}, MaxEventSize-len(b.Name))
	w := f.wire(t, b, f.keys[n1])
	if _, _, _, err := decodeEvent(w); err != nil {
		t.Fatalf("an event of MaxEventSize: %v", err)
	}
	if len(w) > maxEventWire {
		t.Fatalf("an event of MaxEventSize is %d bytes on the wire, above maxEventWire %d", len(w), maxEventWire)
	}
	b.Payload = append(b.Payload, 'p')
	if _, err := encodeEvent(b, f.keys[n1]); err == nil {
		t.Fatal("an event above MaxEventSize was encoded")
	}
	b.Payload, b.TagFilter = nil, "x"
	if _, err := encodeEvent(b, f.keys[n1]); err == nil {
		t.Fatal("a tag filter without a service filter was encoded")
	}
}

func FuzzDecodeEvent(f *testing.F) {
	fx := newEventFixture(f)
	n1 := fx.ids[0]
	b := fx.body(f, n1, "deploy")
	f.Add(fx.wire(f, b, fx.keys[n1]))
	b.NodeFilter, b.ServiceFilter, b.TagFilter = "^n", "web", "v1"
	f.Add(fx.wire(f, b, fx.keys[n1]))
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, wire []byte) {
		body, msg, sig, err := decodeEvent(wire)
		if err != nil {
			return
		}
		if err := body.validate(); err != nil {
			t.Fatalf("decoded an invalid body: %v", err)
		}
		if len(sig) != ed25519.SignatureSize || !bytes.HasPrefix(msg, []byte(eventSignDomain)) {
			t.Fatal("bad signature or message shape")
		}
		var es eventState
		es.receive(wire, 1, fx.env()) // must not panic
	})
}
