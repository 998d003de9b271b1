package gossip

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"
)

// ptSim runs N Plumtree state machines over a lossy in-memory network in
// one goroutine: messages are delivered in random order, and Tick is
// called on every node once the network is quiet.
type ptSim struct {
	tb    testing.TB
	names []string
	nodes map[string]*Plumtree
	rng   *rand.Rand
	loss  float64 // probability that a message is dropped
	// bytes counts encoded bytes of every message sent (when countBytes).
	countBytes bool
	bytes      uint64
	queue      []simMsg
	delivered  map[MessageID]map[string]bool
	reject     func(payload []byte) bool // nil accepts everything
}

type simMsg struct {
	from string
	env  Envelope
}

type simOpts struct {
	n      int
	seed   uint64
	loss   float64
	fanout int
}

func newPtSim(tb testing.TB, o simOpts) *ptSim {
	tb.Helper()
	s := &ptSim{
		tb:        tb,
		nodes:     map[string]*Plumtree{},
		rng:       rand.New(rand.NewPCG(o.seed, 99)),
		loss:      o.loss,
		delivered: map[MessageID]map[string]bool{},
	}
	for i := range o.n {
		s.names = append(s.names, fmt.Sprintf("p%04d", i))
	}
	for i, name := range s.names {
		pt, err := NewPlumtree(PlumtreeConfig{Self: name, Seed: o.seed*7919 + uint64(i), Fanout: o.fanout})
		if err != nil {
			tb.Fatal(err)
		}
		s.nodes[name] = pt
	}
	for _, name := range s.names {
		s.nodes[name].SetPeers(s.names)
		s.collect(name)
	}
	s.settle()
	return s
}

func (s *ptSim) collect(from string) {
	for _, env := range s.nodes[from].Outbox() {
		if s.countBytes {
			b, err := EncodeMessage(env.Msg)
			if err != nil {
				s.tb.Fatalf("encode: %v", err)
			}
			s.bytes += uint64(len(b))
		}
		s.queue = append(s.queue, simMsg{from: from, env: env})
	}
}

// settle delivers messages in random order until none is in flight.
func (s *ptSim) settle() {
	for steps := 0; len(s.queue) > 0; steps++ {
		if steps > 50_000_000 {
			s.tb.Fatal("simulation does not settle")
		}
		i := s.rng.IntN(len(s.queue))
		m := s.queue[i]
		s.queue[i] = s.queue[len(s.queue)-1]
		s.queue = s.queue[:len(s.queue)-1]
		if s.loss > 0 && s.rng.Float64() < s.loss {
			continue
		}
		to := s.nodes[m.env.To]
		if to == nil {
			continue
		}
		if d, ok := to.Receive(m.from, m.env.Msg); ok {
			valid := s.reject == nil || !s.reject(d.Payload)
			if valid {
				s.mark(d.ID, m.env.To)
			}
			to.Validated(d.ID, valid)
		}
		s.collect(m.env.To)
	}
}

func (s *ptSim) mark(id MessageID, node string) {
	if s.delivered[id] == nil {
		s.delivered[id] = map[string]bool{}
	}
	s.delivered[id][node] = true
}

// tick ticks every node and settles the network.
func (s *ptSim) tick() {
	for _, name := range s.names {
		s.nodes[name].Tick()
		s.collect(name)
	}
	s.settle()
}

// broadcast originates a unique payload of size bytes at node src.
func (s *ptSim) broadcast(src string, seq, size int) MessageID {
	payload := make([]byte, max(size, 8))
	binary.BigEndian.PutUint64(payload, uint64(seq))
	id, err := s.nodes[src].Broadcast(payload)
	if err != nil {
		s.tb.Fatal(err)
	}
	s.mark(id, src)
	s.collect(src)
	return id
}

func (s *ptSim) complete(id MessageID) bool { return len(s.delivered[id]) == len(s.names) }

// runUntilComplete ticks until every node has ids, at most maxTicks.
func (s *ptSim) runUntilComplete(ids []MessageID, maxTicks int) int {
	s.tb.Helper()
	s.settle()
	for t := 0; ; t++ {
		done := true
		for _, id := range ids {
			if !s.complete(id) {
				done = false
				break
			}
		}
		if done {
			return t
		}
		if t >= maxTicks {
			missing := 0
			for _, id := range ids {
				missing += len(s.names) - len(s.delivered[id])
			}
			s.tb.Fatalf("after %d ticks, %d deliveries still missing", maxTicks, missing)
		}
		s.tick()
	}
}

func (s *ptSim) totals() (st PlumtreeStats) {
	for _, pt := range s.nodes {
		x := pt.Stats()
		st.PayloadsSent += x.PayloadsSent
		st.PayloadBytesSent += x.PayloadBytesSent
		st.IHaveIDsSent += x.IHaveIDsSent
		st.IHavesSent += x.IHavesSent
		st.GraftsSent += x.GraftsSent
		st.PrunesSent += x.PrunesSent
		st.ControlSent += x.ControlSent
		st.Duplicates += x.Duplicates
		st.Neighbors += x.Neighbors
		st.SharedEager += x.SharedEager
		st.GraftsServed += x.GraftsServed
	}
	return st
}

func (s *ptSim) randomNode() string { return s.names[s.rng.IntN(len(s.names))] }

// transmissionsPerNode runs updates broadcasts from random nodes,
// concurrent at a time (all originated before any is delivered), each
// group completing before the next, and returns payload transmissions per
// node per update and encoded bytes per update.
func (s *ptSim) transmissionsPerNode(updates, concurrent, size int, seq *int) (perNode, bytesPerUpdate float64) {
	before, beforeBytes := s.totals().PayloadsSent, s.bytes
	for done := 0; done < updates; {
		var ids []MessageID
		for k := 0; k < concurrent && done < updates; k++ {
			*seq++
			done++
			ids = append(ids, s.broadcast(s.randomNode(), *seq, size))
		}
		s.runUntilComplete(ids, 100)
		// Let the IHAVEs of these updates go out (they are part of the cost).
		s.tick()
	}
	sent := s.totals().PayloadsSent - before
	return float64(sent) / float64(updates) / float64(len(s.names)),
		float64(s.bytes-beforeBytes) / float64(updates)
}

func TestPlumtreeReachesAll(t *testing.T) {
	t.Parallel()
	for _, n := range []int{50, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := newPtSim(t, simOpts{n: n, seed: uint64(n)})
			seq := 0
			var ids []MessageID
			for range 30 {
				seq++
				ids = append(ids, s.broadcast(s.randomNode(), seq, 100))
			}
			// Concurrent broadcasts, no loss: all must arrive.
			s.runUntilComplete(ids, 50)
		})
	}
}

func TestPlumtreeReachesAllUnderLoss(t *testing.T) {
	t.Parallel()
	s := newPtSim(t, simOpts{n: 150, seed: 7, loss: 0.05})
	seq := 0
	var ids []MessageID
	for range 40 {
		seq++
		ids = append(ids, s.broadcast(s.randomNode(), seq, 100))
		s.tick()
	}
	s.runUntilComplete(ids, 300)
	if st := s.totals(); st.GraftsSent == 0 {
		t.Fatalf("loss repaired without any GRAFT: %+v", st)
	}
}

// TestPlumtreeHeavyLoss: at 20% message loss a node occasionally loses the
// payload and every IHAVE for it; Plumtree alone then gives up and
// anti-entropy repairs (see TestDriverWithAntiEntropyUnderLoss). Plumtree
// must still deliver nearly everything by itself.
func TestPlumtreeHeavyLoss(t *testing.T) {
	t.Parallel()
	s := newPtSim(t, simOpts{n: 150, seed: 7, loss: 0.2})
	seq := 0
	var ids []MessageID
	for range 40 {
		seq++
		ids = append(ids, s.broadcast(s.randomNode(), seq, 100))
		s.tick()
	}
	for range 100 {
		s.tick()
	}
	got, want := 0, len(ids)*len(s.names)
	for _, id := range ids {
		got += len(s.delivered[id])
	}
	t.Logf("20%% loss: %d of %d deliveries by Plumtree alone", got, want)
	if float64(got) < 0.99*float64(want) {
		t.Fatalf("20%% loss: only %d of %d deliveries", got, want)
	}
}

func TestPlumtreeSteadyStateTransmissions(t *testing.T) {
	t.Parallel()
	for _, n := range []int{50, 200} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := newPtSim(t, simOpts{n: n, seed: 3})
			seq := 0
			warm, _ := s.transmissionsPerNode(20, 1, 100, &seq)
			steady, _ := s.transmissionsPerNode(100, 1, 100, &seq)
			t.Logf("N=%d payload transmissions per node per update: warm-up %.3f, steady %.3f", n, warm, steady)
			if steady > 2 {
				t.Fatalf("steady state: %.3f payload transmissions per node per update, want <= 2", steady)
			}
		})
	}
}

// BenchmarkPlumtree reports payload transmissions per node per update and
// encoded bytes per update in steady state (after 30 warm-up updates), for
// 1 KiB payloads from random origins, in the single-goroutine simulator;
// "concurrent=4" originates four updates from different nodes at once.
func BenchmarkPlumtree(b *testing.B) {
	for _, n := range []int{100, 1000} {
		for _, conc := range []int{1, 4} {
			b.Run(fmt.Sprintf("N=%d/concurrent=%d", n, conc), func(b *testing.B) {
				s := newPtSim(b, simOpts{n: n, seed: 11})
				seq := 0
				s.transmissionsPerNode(30, conc, 1024, &seq)
				s.countBytes = true
				before := s.totals()
				b.ResetTimer()
				perNode, bytesPer := s.transmissionsPerNode(b.N, conc, 1024, &seq)
				b.StopTimer()
				after := s.totals()
				per := func(v uint64) float64 { return float64(v) / float64(b.N) / float64(n) }
				b.ReportMetric(perNode, "payloads/node/update")
				b.ReportMetric(bytesPer, "bytes/update")
				b.ReportMetric(bytesPer/float64(n), "bytes/node/update")
				b.ReportMetric(per(after.IHaveIDsSent-before.IHaveIDsSent), "ihaveIDs/node/update")
				b.ReportMetric(per(after.GraftsSent-before.GraftsSent), "grafts/node/update")
				b.ReportMetric(float64(after.Neighbors)/float64(n), "neighbors/node")
			})
		}
	}
}
