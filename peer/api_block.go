package peer

import (
	"math/rand/v2"
	"net/http"
	"sync"
	"time"
)

// Health and catalog answers depend on membership too (serfHealth, nodes
// that left are hidden), which the replica's scopes do not see. One
// goroutine per agent compares the membership digest after every serf
// event (and every memberPollInterval, as a backstop) and bumps an epoch
// on every change, closing a shared channel like the replica's watches do.
// The index of such answers is scope index + epoch: it grows when either
// grows, so a Consul client's watch (which ignores answers whose index did
// not change) sees a node failing.

// memberPollInterval is how often the membership digest is compared
// without an event.
const memberPollInterval = 250 * time.Millisecond

// memberWatch is the membership epoch; mu guards every field.
type memberWatch struct {
	mu     sync.Mutex
	epoch  uint64
	digest uint64
	ch     chan struct{}
	kicks  chan struct{} // capacity 1: a comparison is due
}

// kick asks for a comparison now (a membership event arrived); kicks
// that arrive while one is pending coalesce.
func (mw *memberWatch) kick() {
	select {
	case mw.kickCh() <- struct{}{}:
	default:
	}
}

func (mw *memberWatch) kickCh() chan struct{} {
	mw.mu.Lock()
	defer mw.mu.Unlock()
	if mw.kicks == nil {
		mw.kicks = make(chan struct{}, 1)
	}
	return mw.kicks
}

func (mw *memberWatch) current() (uint64, <-chan struct{}) {
	mw.mu.Lock()
	defer mw.mu.Unlock()
	if mw.ch == nil {
		mw.ch = make(chan struct{})
	}
	return mw.epoch, mw.ch
}

func (mw *memberWatch) observe(digest uint64) {
	mw.mu.Lock()
	defer mw.mu.Unlock()
	if digest == mw.digest {
		return
	}
	mw.digest = digest
	mw.epoch++
	if mw.ch != nil {
		close(mw.ch)
	}
	mw.ch = make(chan struct{})
}

// watchMembership runs until the agent stops (started by startLocal).
func (a *Agent) watchMembership() {
	t := time.NewTicker(memberPollInterval)
	defer t.Stop()
	kicks := a.local.members.kickCh()
	for {
		d, _ := a.membershipDigest()
		a.local.members.observe(d)
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		case <-kicks:
		}
	}
}

// blockMembers is a blocking query over one replica scope and membership.
// It returns the answer's index.
func (s *apiServer) blockMembers(r *http.Request, scope string) (uint64, error) {
	minIndex, wait, err := blockingParams(r)
	if err != nil {
		return 0, err
	}
	a := s.a
	current := func() (uint64, <-chan struct{}, <-chan struct{}) {
		e, mch := a.local.members.current()
		idx, sch := a.replica.WatchIndex(scope)
		return idx + e, sch, mch
	}
	idx, sch, mch := current()
	if minIndex == 0 || idx != minIndex {
		return idx, nil
	}
	jitter := time.Duration(0)
	if wait >= 16 {
		jitter = time.Duration(rand.Int64N(int64(wait / 16)))
	}
	timer := time.NewTimer(wait + jitter)
	defer timer.Stop()
	for {
		select {
		case <-sch:
		case <-mch:
		case <-timer.C:
			idx, _, _ = current()
			return idx, nil
		case <-r.Context().Done():
			return idx, nil // the client went away
		}
		idx, sch, mch = current()
		if idx != minIndex {
			return idx, nil
		}
	}
}
