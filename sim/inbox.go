package sim

import (
	"container/heap"
	"sync"
	"time"
)

// inbox runs the deliveries to one node, in order of arrival time (ties
// in order of sending), from one long-lived goroutine per node.
//
// Why not time.AfterFunc per message: inside a synctest bubble each fired
// timer starts a goroutine, whose small stack then grows through the
// receive path (Plumtree, merge, signature checks); at 1,000 peers that
// was millions of goroutine starts and stack copies. One goroutine per
// receiver keeps its stack, runs one timer instead of one per message, and
// fixes the order of same-instant deliveries to a node.
type inbox struct {
	// mu guards q, seq and started.
	mu      sync.Mutex
	q       deliveries
	seq     uint64
	started bool
	wake    chan struct{} // capacity 1: a new earliest delivery
}

type delivery struct {
	at  time.Time
	seq uint64
	fn  func()
}

// deliveries is a min-heap by (at, seq).
type deliveries []delivery

func (d deliveries) Len() int { return len(d) }
func (d deliveries) Less(i, j int) bool {
	if !d[i].at.Equal(d[j].at) {
		return d[i].at.Before(d[j].at)
	}
	return d[i].seq < d[j].seq
}
func (d deliveries) Swap(i, j int) { d[i], d[j] = d[j], d[i] }
func (d *deliveries) Push(x any)   { *d = append(*d, x.(delivery)) }
func (d *deliveries) Pop() any {
	old := *d
	x := old[len(old)-1]
	old[len(old)-1] = delivery{}
	*d = old[:len(old)-1]
	return x
}

// schedule runs fn at node to's inbox after delay. After Close it does
// nothing.
func (n *Network) schedule(to int, delay time.Duration, fn func()) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	b := &n.inboxes[to]
	b.mu.Lock()
	if !b.started {
		b.started = true
		b.wake = make(chan struct{}, 1)
		n.wg.Add(1)
		go n.runInbox(b)
	}
	n.mu.Unlock()
	b.seq++
	heap.Push(&b.q, delivery{at: time.Now().Add(delay), seq: b.seq, fn: fn})
	first := b.q[0].seq == b.seq
	b.mu.Unlock()
	if first {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

func (n *Network) runInbox(b *inbox) {
	defer n.wg.Done()
	// A timer is never moved to an earlier time (Reset): the runtime
	// then rescans every timer of the bubble, tens of thousands at 1,000
	// peers. An earlier delivery gets a fresh timer instead; the stopped
	// one is dropped lazily.
	var (
		t     *time.Timer
		armed time.Time // when t fires; zero when t is nil or fired
		due   []func()
	)
	for {
		b.mu.Lock()
		now := time.Now()
		due = due[:0]
		for len(b.q) > 0 && !b.q[0].at.After(now) {
			due = append(due, heap.Pop(&b.q).(delivery).fn)
		}
		var next time.Time
		if len(b.q) > 0 {
			next = b.q[0].at
		}
		b.mu.Unlock()
		if len(due) > 0 {
			for i, fn := range due {
				fn()
				due[i] = nil
			}
			continue
		}
		if !next.IsZero() && (armed.IsZero() || next.Before(armed)) {
			if !armed.IsZero() {
				t.Stop()
			}
			t, armed = time.NewTimer(next.Sub(now)), next
		}
		var tc <-chan time.Time
		if !armed.IsZero() {
			tc = t.C
		}
		select {
		case <-n.done:
			if !armed.IsZero() {
				t.Stop()
			}
			return
		case <-b.wake:
		case <-tc:
			armed = time.Time{}
		}
	}
}

// Close stops the delivery goroutines (pending deliveries are dropped)
// and waits for them. It is idempotent.
func (n *Network) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	close(n.done)
	n.mu.Unlock()
	n.wg.Wait()
}
