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
	t := time.NewTimer(time.Hour)
	t.Stop()
	var due []func()
	for {
		b.mu.Lock()
		now := time.Now()
		due = due[:0]
		for len(b.q) > 0 && !b.q[0].at.After(now) {
			due = append(due, heap.Pop(&b.q).(delivery).fn)
		}
		wait := time.Duration(-1)
		if len(b.q) > 0 {
			wait = b.q[0].at.Sub(now)
		}
		b.mu.Unlock()
		if len(due) > 0 {
			for i, fn := range due {
				fn()
				due[i] = nil
			}
			continue
		}
		if wait >= 0 {
			t.Reset(wait)
		}
		select {
		case <-n.done:
			t.Stop()
			return
		case <-b.wake:
			t.Stop()
		case <-t.C:
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
