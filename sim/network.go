package sim

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// LinkProfile describes one direction of a link. The zero value is a
// perfect link: no delay, no loss, unlimited bandwidth.
type LinkProfile struct {
	// Latency is the one-way base delay.
	Latency time.Duration
	// Jitter adds a uniformly random delay in [0, Jitter).
	Jitter time.Duration
	// Loss is the probability that a datagram (memberlist UDP) is dropped;
	// on reliable streams (Plumtree, anti-entropy, memberlist TCP) a loss
	// costs a retransmission timeout instead, as QUIC/TCP would.
	Loss float64
	// Duplicate is the probability that a datagram is delivered twice.
	Duplicate float64
	// Reorder is the probability that a message gets an extra delay of up
	// to ReorderDelay (so later messages overtake it).
	Reorder float64
	// ReorderDelay bounds the extra delay of a reordered message; 0 means
	// 4×Latency (at least 10 ms).
	ReorderDelay time.Duration
	// Bandwidth in bytes per second per directed link; 0 means unlimited.
	// Messages queue behind each other on a link (serialisation delay).
	Bandwidth int64
}

// Class labels traffic for the statistics.
type Class int

// Traffic classes.
const (
	ClassMember Class = iota // serf/memberlist packets and streams (and baseline user events)
	ClassTree                // Plumtree messages
	ClassAE                  // anti-entropy exchanges
	numClasses
)

func (c Class) String() string {
	return [...]string{"membership", "plumtree", "antientropy"}[c]
}

// payloadMarker starts every value the workload writes, so that payload
// copies can be counted on the wire regardless of the dissemination
// protocol's framing.
var payloadMarker = []byte("SIMV")

// errUnreachable is returned when a link is cut or the peer is down.
var errUnreachable = errors.New("sim: unreachable")

// bucket is one second of traffic.
type bucket struct {
	bytes  [numClasses]uint64
	msgs   [numClasses]uint64
	copies [numClasses]uint64 // payload values carried
}

// Network is the simulated network between n nodes, driven by a seeded
// generator. Nodes are numbered 0..n-1. All methods are safe for
// concurrent use.
type Network struct {
	start time.Time

	// mu guards every field below.
	mu       sync.Mutex
	seed     uint64
	rng      *rand.Rand // Network.Rand only; message draws use linkRNG
	sent     linkCounters
	def      LinkProfile
	cut      map[[2]int]bool      // directed links that drop everything
	part     []int                // partition group of each node; 0 is the default group
	groupCut map[[2]int]bool      // directed group pairs that cannot talk
	isolated []bool               // nodes cut from everyone
	busy     map[[2]int]time.Time // bandwidth: when a link is free again
	down     []bool               // crashed nodes
	epoch    []uint64             // incarnation of each node
	buckets  []bucket
	dropped  uint64

	inboxes []inbox // per receiving node, see inbox.go
	done    chan struct{}
	wg      sync.WaitGroup
	closed  bool
}

// NewNetwork builds a network of n nodes with the default link profile.
func NewNetwork(n int, def LinkProfile, seed uint64) *Network {
	return &Network{
		start:    time.Now(),
		seed:     seed,
		rng:      rand.New(rand.NewPCG(seed, 0x6e6574)),
		sent:     newLinkCounters(n),
		def:      def,
		cut:      map[[2]int]bool{},
		part:     make([]int, n),
		groupCut: map[[2]int]bool{},
		isolated: make([]bool, n),
		busy:     map[[2]int]time.Time{},
		down:     make([]bool, n),
		epoch:    make([]uint64, n),
		inboxes:  make([]inbox, n),
		done:     make(chan struct{}),
	}
}

// SetProfile replaces the link profile of every link.
func (n *Network) SetProfile(p LinkProfile) {
	n.mu.Lock()
	n.def = p
	n.mu.Unlock()
}

// Profile returns the current link profile.
func (n *Network) Profile() LinkProfile {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.def
}

// Cut blocks the directed link a→b (or restores it).
func (n *Network) Cut(a, b int, cut bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if cut {
		n.cut[[2]int{a, b}] = true
	} else {
		delete(n.cut, [2]int{a, b})
	}
}

// Partition splits the nodes into groups that cannot talk to each other;
// nodes in no group form one more group. With asymmetric, only messages
// from a lower-numbered group to a higher-numbered one are cut (the other
// direction still flows).
func (n *Network) Partition(groups [][]int, asymmetric bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for i := range n.part {
		n.part[i] = 0
	}
	n.groupCut = map[[2]int]bool{}
	for g, members := range groups {
		for _, a := range members {
			n.part[a] = g + 1
		}
	}
	for a := 0; a <= len(groups); a++ {
		for b := 0; b <= len(groups); b++ {
			if a == b || (asymmetric && a > b) {
				continue
			}
			n.groupCut[[2]int{a, b}] = true
		}
	}
}

// Isolate cuts node i from every other node (or restores it).
func (n *Network) Isolate(i int, isolated bool) {
	n.mu.Lock()
	n.isolated[i] = isolated
	n.mu.Unlock()
}

// Heal restores every link: partitions, isolations and single cuts.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = map[[2]int]bool{}
	n.groupCut = map[[2]int]bool{}
	for i := range n.part {
		n.part[i] = 0
		n.isolated[i] = false
	}
}

// Faulty reports whether any link is cut.
func (n *Network) Faulty() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.cut) > 0 || len(n.groupCut) > 0 {
		return true
	}
	for _, iso := range n.isolated {
		if iso {
			return true
		}
	}
	return false
}

// SetDown marks node i crashed (its incarnation ends) or up again.
func (n *Network) SetDown(i int, down bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.down[i] = down
	n.epoch[i]++
}

// IsDown reports whether node i is crashed.
func (n *Network) IsDown(i int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.down[i]
}

// Rand runs f with the network's generator (for fault choices that must
// come from the same seeded stream).
func (n *Network) Rand(f func(r *rand.Rand)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f(n.rng)
}

func (n *Network) recordLocked(c Class, b []byte) {
	sec := int(time.Since(n.start) / time.Second)
	if sec < 0 {
		sec = 0
	}
	for len(n.buckets) <= sec {
		n.buckets = append(n.buckets, bucket{})
	}
	bk := &n.buckets[sec]
	bk.bytes[c] += uint64(len(b))
	bk.msgs[c]++
	bk.copies[c] += uint64(bytes.Count(b, payloadMarker))
}

func (n *Network) blockedLocked(from, to int) bool {
	return n.down[from] || n.down[to] || n.isolated[from] || n.isolated[to] ||
		n.groupCut[[2]int{n.part[from], n.part[to]}] || n.cut[[2]int{from, to}]
}

// delayLocked returns the delivery delay of a message of size bytes on
// from→to, accounting for bandwidth queueing; its random draws come from
// r, the message's generator.
func (n *Network) delayLocked(r *linkRNG, from, to, size int, reliable bool) time.Duration {
	p := n.def
	d := p.Latency
	if p.Jitter > 0 {
		d += time.Duration(r.int64n(int64(p.Jitter)))
	}
	if p.Reorder > 0 && r.float64() < p.Reorder {
		rd := p.ReorderDelay
		if rd <= 0 {
			rd = max(4*p.Latency, 10*time.Millisecond)
		}
		d += time.Duration(r.int64n(int64(rd)))
	}
	if reliable && p.Loss > 0 {
		rto := max(3*p.Latency, 200*time.Millisecond)
		for i := 0; i < 8 && r.float64() < p.Loss; i++ {
			d += rto
			rto *= 2
		}
	}
	if p.Bandwidth > 0 {
		now := time.Now()
		k := [2]int{from, to}
		free := n.busy[k]
		if free.Before(now) {
			free = now
		}
		tx := time.Duration(int64(size) * int64(time.Second) / p.Bandwidth)
		free = free.Add(tx)
		n.busy[k] = free
		d += free.Sub(now)
	}
	return d
}

// datagram sends b from→to unreliably: deliver runs after the link delay
// unless the message is lost, the link is cut or either end is down (also
// when the receiver crashed meanwhile). It never blocks.
func (n *Network) datagram(from, to int, c Class, b []byte, deliver func([]byte)) {
	n.mu.Lock()
	n.recordLocked(c, b)
	if n.blockedLocked(from, to) {
		n.dropped++
		n.mu.Unlock()
		return
	}
	r := n.linkRNGLocked(from, to)
	if n.def.Loss > 0 && r.float64() < n.def.Loss {
		n.dropped++
		n.mu.Unlock()
		return
	}
	copies := 1
	if n.def.Duplicate > 0 && r.float64() < n.def.Duplicate {
		copies = 2
	}
	ep := n.epoch[to]
	var delays [2]time.Duration
	for i := range copies {
		delays[i] = n.delayLocked(&r, from, to, len(b), false)
	}
	n.mu.Unlock()
	for _, d := range delays[:copies] {
		n.schedule(to, d, func() {
			if n.alive(to, ep) {
				deliver(b)
			}
		})
	}
}

// stream sends b from→to reliably (a message on a QUIC/TCP stream):
// deliver runs after the link delay (plus retransmissions). It fails at
// once when the link is cut or an end is down.
func (n *Network) stream(from, to int, c Class, b []byte, deliver func([]byte)) error {
	n.mu.Lock()
	n.recordLocked(c, b)
	if n.blockedLocked(from, to) {
		n.dropped++
		n.mu.Unlock()
		return fmt.Errorf("%w: %d→%d", errUnreachable, from, to)
	}
	ep := n.epoch[to]
	r := n.linkRNGLocked(from, to)
	d := n.delayLocked(&r, from, to, len(b), true)
	n.mu.Unlock()
	n.schedule(to, d, func() {
		if n.alive(to, ep) {
			deliver(b)
		}
	})
	return nil
}

// transit accounts for b on from→to and returns its delay (for a
// synchronous exchange), or an error if it cannot pass.
func (n *Network) transit(from, to int, c Class, b []byte) (time.Duration, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.recordLocked(c, b)
	if n.blockedLocked(from, to) {
		n.dropped++
		return 0, fmt.Errorf("%w: %d→%d", errUnreachable, from, to)
	}
	r := n.linkRNGLocked(from, to)
	return n.delayLocked(&r, from, to, len(b), true), nil
}

func (n *Network) alive(i int, ep uint64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.down[i] && n.epoch[i] == ep
}

// Traffic returns a copy of the per-second traffic buckets.
func (n *Network) traffic() []bucket {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]bucket(nil), n.buckets...)
}
