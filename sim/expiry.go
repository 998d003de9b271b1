package sim

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/peerd/peerd/crdt"
)

// Certificate expiry in the simulator: the event
//
//	event { at = "3s"  action = "expire"  node = 3 }
//
// makes peer 3's certificate end (NotAfter) at that time of the fault
// phase, in the reference clock. No statement travels: every peer's trust
// book judges by its own clock (with its skew), as peer's trustBook does.
// From then on a peer cuts peer 3 off like a revoked one, and answers its
// correctly signed records with a Renewable crdt.OriginRevokedError at
// the expiry (peer's trustBook.chainCut): records stamped before it
// count, the others are dead stubs. Each live peer sweeps its replica
// once its clock has passed the expiry (peer sweeps on its minute tick).
// Peer 3 keeps writing once a second, as a host that did not notice, and
// is taken down at the heal, as a revoked peer is.

// expiry is one expire event.
type expiry struct {
	subject int
	id      string
	off     time.Duration // NotAfter, since the start of the fault phase
	swept   map[int]bool  // peers that swept after their clock passed it; run goroutine only
}

// expiries is the run's expire events, fixed before any peer starts.
type expiries struct {
	list  []*expiry
	byID  map[string]*expiry
	start atomic.Int64 // the fault phase's start (Unix ns); 0 until it starts
}

func (c *Cluster) newExpiries() *expiries {
	x := &expiries{byID: map[string]*expiry{}}
	for _, e := range c.sc.Events {
		if e.Action != "expire" || e.Node < 0 {
			continue
		}
		id := c.nodes[e.Node].id
		if _, dup := x.byID[id]; dup {
			continue
		}
		ex := &expiry{subject: e.Node, id: id, off: e.At, swept: map[int]bool{}}
		x.list = append(x.list, ex)
		x.byID[id] = ex
	}
	return x
}

// expiresAt returns origin's certificate's end, if it has one.
func (x *expiries) expiresAt(origin string) (time.Time, bool) {
	ex, ok := x.byID[origin]
	ns := x.start.Load()
	if !ok || ns == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, ns).Add(ex.off), true
}

// expiredAt reports whether origin's certificate had ended by this trust
// book's clock, and when.
func (a *nodeAuth) expiredAt(origin string) (time.Time, bool) {
	at, ok := a.c.expiry.expiresAt(origin)
	if !ok || a.now().Before(at) {
		return time.Time{}, false
	}
	return at, true
}

// expireEvent expands an expire event: the subject leaves the workload at
// its expiry and keeps writing once a second from 1 s after it; every
// live peer sweeps once its clock has passed the expiry (checked every
// 250 ms from Skew before to Skew + 1 s after it).
func (c *Cluster) expireEvent(e Event) []action {
	ex := c.expiry.byID[c.nodes[max(e.Node, 0)].id]
	if e.Node < 0 || ex == nil {
		return nil
	}
	out := []action{{e.At, func() {
		c.note("expire %s", ex.id)
		c.logf("certificate of %s expires", ex.id)
		c.authz.revoked[ex.subject] = true
		c.openSpan("expired " + ex.id)
	}}}
	for t, k := e.At+time.Second, 0; t < c.sc.Duration; t, k = t+time.Second, k+1 {
		out = append(out, action{t, func() { c.expiredWrite(ex, k) }})
	}
	for t := max(e.At-c.sc.Skew, 0); t <= e.At+c.sc.Skew+time.Second; t += 250 * time.Millisecond {
		out = append(out, action{t, func() { c.sweepExpired(ex) }})
	}
	return out
}

// sweepExpired sweeps each live peer whose clock has passed ex's expiry
// and that has not swept for it yet.
func (c *Cluster) sweepExpired(ex *expiry) {
	for _, n := range c.nodes {
		if ex.swept[n.idx] || n.idx == ex.subject || !n.isUp() {
			continue
		}
		a := n.auth.Load()
		rep := n.rep()
		if a == nil || rep == nil {
			continue
		}
		if _, ok := a.expiredAt(ex.id); !ok {
			continue
		}
		ex.swept[n.idx] = true
		c.sweepRevoked(&incarnation{n: n, replica: rep, auth: a})
	}
}

// expiredWrite has the expired peer write a KV record.
func (c *Cluster) expiredWrite(ex *expiry, k int) {
	n := c.nodes[ex.subject]
	if !n.isUp() {
		return
	}
	key := fmt.Sprintf("authz/expired/%s/%d", n.id, k)
	c.note("expired-write %s %s", n.id, key)
	_, _ = n.write(func(r *crdt.Replica, now time.Time) (*crdt.Delta, error) {
		return r.KVPut(key, []byte("expired"), 0, now)
	})
}

// expiredSubjects lists the expired peers, for checkRevokedSplit.
func (c *Cluster) expiredSubjects() []revocation {
	var out []revocation
	for _, ex := range c.expiry.list {
		out = append(out, revocation{subject: ex.subject})
	}
	return slices.Clip(out)
}
