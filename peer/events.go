package peer

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerd/peerd/gossip"
	"github.com/peerd/peerd/identity"
)

// User events (Consul's /v1/event/*, `consul event`) travel as serf user
// events, signed by the firing node's key (events_wire.go). An agent
// records an event only when its origin is trusted now, the signature
// verifies, it was fired within eventMaxSkew of this agent's clock, it is
// not a repeat, and Consul's node, service and tag filters match this
// agent. Recorded events are kept in a ring of the last eventRingSize,
// listed oldest first (docs/COMPATIBILITY.md, "User events").

// eventRingSize is how many recorded events an agent keeps (Consul: 256).
const eventRingSize = 256

// eventMaxSkew bounds how far an event's firing time may lie from this
// agent's clock, either way. An older event is a replay or came too late
// and is dropped (counted as stale).
const eventMaxSkew = 10 * time.Minute

// maxSeenEvents bounds the IDs remembered to drop repeats. An ID is kept
// until no copy of its event can pass the time check any more (2 ×
// eventMaxSkew after it was first seen) or, beyond this many, until it is
// the oldest.
const maxSeenEvents = 8192

// UserEvent is Consul's user event, as /v1/event/fire answers and
// /v1/event/list lists it.
type UserEvent struct {
	ID            string
	Name          string
	Payload       []byte
	NodeFilter    string
	ServiceFilter string
	TagFilter     string
	Version       int
	LTime         uint64
}

// eventStats count what happened to user events on this agent.
type eventStats struct {
	Fired      atomic.Uint64 // fired through this agent
	Recorded   atomic.Uint64 // accepted and matching this agent's filters
	Filtered   atomic.Uint64 // accepted, not for this agent (node, service, tag)
	Duplicates atomic.Uint64 // accepted before
	Stale      atomic.Uint64 // fired outside eventMaxSkew of this agent's clock
	Rejected   atomic.Uint64 // malformed, bad signature, untrusted or revoked origin
}

// eventState is an agent's user events: the ring of recorded ones, the
// IDs seen, and a channel closed at each new event for blocking lists.
// Its zero value is ready.
type eventState struct {
	stats eventStats

	// mu guards every field below.
	mu    sync.Mutex
	ring  [eventRingSize]UserEvent
	next  int // where the next event goes
	count int // events in ring, at most eventRingSize
	ch    chan struct{}
	seen  map[string]time.Time // origin/ID → when to forget it
	order []string             // keys of seen, oldest first

	lastWarn atomic.Int64 // Unix nanoseconds of the last rejection warning
}

// add records an event and wakes blocking lists.
func (es *eventState) add(ev UserEvent) {
	es.mu.Lock()
	defer es.mu.Unlock()
	es.ring[es.next] = ev
	es.next = (es.next + 1) % eventRingSize
	es.count = min(es.count+1, eventRingSize)
	if es.ch != nil {
		close(es.ch)
		es.ch = nil
	}
}

// list returns the recorded events, oldest first, and a channel closed
// when the next one is recorded.
func (es *eventState) list() ([]UserEvent, <-chan struct{}) {
	es.mu.Lock()
	defer es.mu.Unlock()
	out := make([]UserEvent, 0, es.count)
	start := (es.next - es.count + eventRingSize) % eventRingSize
	for i := range es.count {
		ev := es.ring[(start+i)%eventRingSize]
		ev.Payload = append([]byte(nil), ev.Payload...)
		if len(ev.Payload) == 0 {
			ev.Payload = nil
		}
		out = append(out, ev)
	}
	if es.ch == nil {
		es.ch = make(chan struct{})
	}
	return out, es.ch
}

// firstSight reports whether key was not seen yet, and remembers it.
func (es *eventState) firstSight(key string, now time.Time) bool {
	es.mu.Lock()
	defer es.mu.Unlock()
	if es.seen == nil {
		es.seen = make(map[string]time.Time)
	}
	for len(es.order) > 0 {
		oldest := es.order[0]
		if len(es.order) < maxSeenEvents && now.Before(es.seen[oldest]) {
			break
		}
		delete(es.seen, oldest)
		es.order = es.order[1:]
	}
	if _, dup := es.seen[key]; dup {
		return false
	}
	es.seen[key] = now.Add(2 * eventMaxSkew)
	es.order = append(es.order, key)
	return true
}

// eventService is what the service and tag filters look at.
type eventService struct {
	ID, Name string
	Tags     []string
}

// eventEnv is what receiving an event needs of the agent.
type eventEnv struct {
	// verify checks that origin is trusted now and signed msg.
	verify   func(origin string, msg, sig []byte) error
	now      time.Time
	nodeName string
	services func() []eventService
}

// errEventFiltered is returned by receive for an event whose filters do
// not match this agent.
var errEventFiltered = errors.New("events: not for this node")

// Verdicts of receive besides recorded (nil) and errEventFiltered.
var (
	errEventDuplicate = errors.New("events: duplicate")
	errEventStale     = errors.New("events: fired too long ago or in the future")
)

// receive judges the wire form of an event delivered by serf with its
// Lamport time; it records it and returns nil, or counts and returns why
// not. Rejections (anything else than errEventFiltered,
// errEventDuplicate and errEventStale) are malformed, forged or untrusted
// events.
func (es *eventState) receive(wire []byte, ltime uint64, env eventEnv) (UserEvent, error) {
	body, msg, sig, err := decodeEvent(wire)
	if err == nil {
		err = env.verify(body.Origin, msg, sig)
	}
	if err != nil {
		es.stats.Rejected.Add(1)
		return UserEvent{}, err
	}
	if d := env.now.Sub(body.firedAt()); d > eventMaxSkew || d < -eventMaxSkew {
		es.stats.Stale.Add(1)
		return UserEvent{}, fmt.Errorf("%w (%s, %v from now)", errEventStale, body.firedAt().UTC().Format(time.RFC3339), -d)
	}
	ev := UserEvent{
		ID: eventUUID(body.ID), Name: body.Name, Payload: body.Payload,
		NodeFilter: body.NodeFilter, ServiceFilter: body.ServiceFilter, TagFilter: body.TagFilter,
		Version: 1, LTime: ltime,
	}
	if !es.firstSight(body.Origin+"/"+ev.ID, env.now) {
		es.stats.Duplicates.Add(1)
		return ev, errEventDuplicate
	}
	ok, err := eventMatches(ev, env.nodeName, env.services)
	if err != nil {
		es.stats.Rejected.Add(1)
		return ev, err
	}
	if !ok {
		es.stats.Filtered.Add(1)
		return ev, errEventFiltered
	}
	es.add(ev)
	es.stats.Recorded.Add(1)
	return ev, nil
}

// compileEventFilters checks an event's filters as Consul does when it
// fires one.
func compileEventFilters(node, service, tag string) (nodeRe, serviceRe, tagRe *regexp.Regexp, err error) {
	if tag != "" && service == "" {
		//lint:ignore ST1005 Consul's words, which clients may match
		return nil, nil, nil, errors.New("Cannot provide tag filter without service filter")
	}
	compile := func(what, expr string) (*regexp.Regexp, error) {
		if expr == "" {
			return nil, nil
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			//lint:ignore ST1005 Consul's words, which clients may match
			return nil, fmt.Errorf("Invalid %s filter: %v", what, err)
		}
		return re, nil
	}
	if nodeRe, err = compile("node", node); err != nil {
		return nil, nil, nil, err
	}
	if serviceRe, err = compile("service", service); err != nil {
		return nil, nil, nil, err
	}
	if tagRe, err = compile("tag", tag); err != nil {
		return nil, nil, nil, err
	}
	return nodeRe, serviceRe, tagRe, nil
}

// eventMatches applies Consul's filters: the node filter to this node's
// name; the service filter to the local services (Consul matches the
// service ID; peerd the ID or the name, which is the same for services
// registered without an ID); with a tag filter, one of that service's
// tags must match too. The expressions are unanchored, as in Consul.
func eventMatches(ev UserEvent, nodeName string, services func() []eventService) (bool, error) {
	nodeRe, serviceRe, tagRe, err := compileEventFilters(ev.NodeFilter, ev.ServiceFilter, ev.TagFilter)
	if err != nil {
		return false, fmt.Errorf("events: %w", err)
	}
	if nodeRe != nil && !nodeRe.MatchString(nodeName) {
		return false, nil
	}
	if serviceRe == nil {
		return true, nil
	}
	for _, s := range services() {
		if !serviceRe.MatchString(s.ID) && !serviceRe.MatchString(s.Name) {
			continue
		}
		if tagRe == nil {
			return true, nil
		}
		for _, t := range s.Tags {
			if tagRe.MatchString(t) {
				return true, nil
			}
		}
	}
	return false, nil
}

// newEventID returns 16 random bytes shaped as a version 4 UUID.
func newEventID() ([]byte, error) {
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id, nil
}

// eventUUID shows an event ID as Consul does (formatUUID: 8-4-4-4-12
// hex); decodeEvent checked that it has 16 bytes.
func eventUUID(b []byte) string { return formatUUID([16]byte(b)) }

// eventIndex is Consul's index of an event list: 1 when empty, else the
// last event's ID read as a 128-bit number with its two halves XORed (what
// consul/api's Event.IDToIndex computes). It is not monotonic: a blocking
// list waits until it differs from ?index=.
func eventIndex(events []UserEvent) uint64 {
	if len(events) == 0 {
		return 1
	}
	b, err := hex.DecodeString(strings.ReplaceAll(events[len(events)-1].ID, "-", ""))
	if err != nil || len(b) != 16 {
		return 1 // never for IDs made by formatUUID
	}
	return binary.BigEndian.Uint64(b[:8]) ^ binary.BigEndian.Uint64(b[8:])
}

// filterEvents keeps the events named name (all for ""), and, for the
// peerd extensions node, service and tag, those fired with exactly that
// filter.
func filterEvents(events []UserEvent, name, node, service, tag string) []UserEvent {
	out := events[:0]
	for _, ev := range events {
		if name != "" && ev.Name != name ||
			node != "" && ev.NodeFilter != node ||
			service != "" && ev.ServiceFilter != service ||
			tag != "" && ev.TagFilter != tag {
			continue
		}
		out = append(out, ev)
	}
	return out
}

// FireEvent signs and broadcasts a user event (ev's name, payload and
// filters) and returns it with its new ID and Version 1; LTime is 0, as in
// Consul's answer. Like every agent, this one records the event if its
// filters match this node, when serf hands it back.
func (a *Agent) FireEvent(ev UserEvent) (UserEvent, error) {
	if _, _, _, err := compileEventFilters(ev.NodeFilter, ev.ServiceFilter, ev.TagFilter); err != nil {
		return UserEvent{}, fmt.Errorf("events: %w", err)
	}
	m := a.membership()
	if m == nil {
		return UserEvent{}, errors.New("events: gossip is not running")
	}
	id, err := newEventID()
	if err != nil {
		return UserEvent{}, err
	}
	body := eventBody{
		Version: eventWireVersion, ID: id, Origin: a.id, Time: time.Now().Unix(),
		Name: ev.Name, Payload: ev.Payload,
		NodeFilter: ev.NodeFilter, ServiceFilter: ev.ServiceFilter, TagFilter: ev.TagFilter,
	}
	wire, err := encodeEvent(body, a.cfg.NodeKey)
	if err != nil {
		return UserEvent{}, err
	}
	if err := m.FireUserEvent(wire); err != nil {
		return UserEvent{}, fmt.Errorf("events: %w", err)
	}
	a.events.stats.Fired.Add(1)
	ev.ID, ev.Version, ev.LTime = eventUUID(id), 1, 0
	if len(ev.Payload) == 0 {
		ev.Payload = nil
	}
	return ev, nil
}

// onUserEvent is gossip.Config.OnUserEvent.
func (a *Agent) onUserEvent(ue gossip.UserEvent) {
	ev, err := a.events.receive(ue.Payload, ue.LTime, a.eventEnv())
	switch {
	case err == nil:
		a.log.Debug("user event", "name", ev.Name, "id", ev.ID)
	case errors.Is(err, errEventFiltered), errors.Is(err, errEventDuplicate):
	case errors.Is(err, errEventStale):
		a.log.Debug("user event dropped", "id", ev.ID, "err", err)
	default:
		// At most one warning per 10 s: anyone who can gossip can send
		// these.
		now := time.Now().UnixNano()
		last := a.events.lastWarn.Load()
		if now-last >= int64(10*time.Second) && a.events.lastWarn.CompareAndSwap(last, now) {
			a.log.Warn("user event rejected", "err", err, "rejected", a.events.stats.Rejected.Load())
		}
	}
}

// eventEnv is how this agent judges received events.
func (a *Agent) eventEnv() eventEnv {
	return eventEnv{
		verify:   a.verifyEventOrigin,
		now:      time.Now(),
		nodeName: a.cfg.NodeName,
		services: a.eventServices,
	}
}

// verifyEventOrigin is the trust book's VerifyOrigin, as for replica
// records. When the trust book has no chain for the origin yet, it first
// learns the one the origin's node record in the replica carries (as
// learnFromDelta does for merged records); that chain must verify.
func (a *Agent) verifyEventOrigin(origin string, msg, sig []byte) error {
	if a.trust.chainOf(origin) == nil {
		if pub, err := identity.ParseNodeID(origin); err == nil && !a.trust.v.IsRoot(pub) {
			if n, ok := a.replica.Node(origin); ok && len(n.Cert) > 0 {
				a.trust.learn(pub, n.Cert) // a failure leaves VerifyOrigin to refuse
			}
		}
	}
	return a.trust.VerifyOrigin(origin, msg, sig)
}

// eventServices lists the local services for the event filters.
func (a *Agent) eventServices() []eventService {
	a.local.mu.Lock()
	defer a.local.mu.Unlock()
	out := make([]eventService, 0, len(a.local.services))
	for _, s := range a.local.services {
		out = append(out, eventService{ID: s.Def.ID, Name: s.Def.Name, Tags: append([]string(nil), s.Def.Tags...)})
	}
	return out
}

// Events returns the user events this agent recorded, oldest first.
func (a *Agent) Events() []UserEvent {
	evs, _ := a.events.list()
	return evs
}

// EventStats is the "events" section of `peerd info` and
// /v1/agent/metrics (peerd.events.*).
func (a *Agent) EventStats() map[string]string {
	s := &a.events.stats
	st := map[string]string{
		"fired":      fmt.Sprint(s.Fired.Load()),
		"recorded":   fmt.Sprint(s.Recorded.Load()),
		"filtered":   fmt.Sprint(s.Filtered.Load()),
		"duplicates": fmt.Sprint(s.Duplicates.Load()),
		"stale":      fmt.Sprint(s.Stale.Load()),
		"rejected":   fmt.Sprint(s.Rejected.Load()),
	}
	if m := a.membership(); m != nil {
		st["dropped"] = fmt.Sprint(m.DroppedUserEvents())
	}
	return st
}
