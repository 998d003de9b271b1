package peer

import (
	"math/rand/v2"
	"sort"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/gossip"
)

// instance is one candidate destination instance for a new connection.
type instance struct {
	Origin    string // node ID running it
	ID        string // service instance ID
	Node      string // node name
	Dist      time.Duration
	DistKnown bool
	Open      int  // proxied connections this node has open to it now
	Failing   bool // its peer failed recently
}

func (i instance) key() string { return i.Origin + "/" + i.ID }

// nearTolerance widens the nearest tier: instances within the nearest
// distance plus max(half of it, nearTolerance) count as equally near, so
// coordinate noise does not pin every connection to one instance.
const nearTolerance = time.Millisecond

// pickOrder orders candidates for one new connection: instances whose peer
// failed recently last; then, when the network coordinates of every
// candidate are known, the nearest tier first; inside a tier, power of two choices on open
// connections (pick two at random, take the one with fewer), repeated, so
// that load spreads without a global counter. Pure: randomness is a
// parameter.
func pickOrder(cands []instance, rnd *rand.Rand) []instance {
	if len(cands) == 0 {
		return nil
	}
	var healthy, failing []instance
	for _, c := range cands {
		if c.Failing {
			failing = append(failing, c)
		} else {
			healthy = append(healthy, c)
		}
	}
	out := make([]instance, 0, len(cands))
	for _, group := range [][]instance{healthy, failing} {
		for _, tier := range tiers(group) {
			out = append(out, p2cOrder(tier, rnd)...)
		}
	}
	return out
}

// tiers splits by distance when every candidate's distance is known: the
// near tier, then the rest sorted by distance. With any distance unknown
// (coordinates not exchanged yet) nearness cannot be judged fairly and all
// candidates form one tier, so load spreads.
func tiers(cs []instance) [][]instance {
	if len(cs) == 0 {
		return nil
	}
	for _, c := range cs {
		if !c.DistKnown {
			return [][]instance{cs}
		}
	}
	known := append([]instance(nil), cs...)
	sort.SliceStable(known, func(i, j int) bool { return known[i].Dist < known[j].Dist })
	limit := known[0].Dist + max(known[0].Dist/2, nearTolerance)
	n := sort.Search(len(known), func(i int) bool { return known[i].Dist > limit })
	if n == len(known) {
		return [][]instance{known}
	}
	return [][]instance{known[:n], known[n:]}
}

// p2cOrder repeatedly draws two of the remaining instances and takes the
// less loaded one (ties broken by the draw).
func p2cOrder(cs []instance, rnd *rand.Rand) []instance {
	rest := append([]instance(nil), cs...)
	out := make([]instance, 0, len(rest))
	for len(rest) > 0 {
		i := 0
		if len(rest) > 1 {
			i = rnd.IntN(len(rest))
			j := rnd.IntN(len(rest) - 1)
			if j >= i {
				j++
			}
			if rest[j].Open < rest[i].Open {
				i = j
			}
		}
		out = append(out, rest[i])
		rest = append(rest[:i], rest[i+1:]...)
	}
	return out
}

// passing reports whether every check of an instance passes (Consul's
// ?passing: warning and critical are both excluded).
func passing(e crdt.ServiceEntry) bool {
	for _, c := range e.Checks {
		if c.Check.Status != crdt.StatusPassing {
			return false
		}
	}
	return true
}

// candidates lists the passing instances of a destination service on
// reachable nodes, with their distance and this node's open connections.
func (dp *dataPlane) candidates(dst string) []instance {
	a := dp.a
	var out []instance
	now := time.Now()
	statuses := dp.memberStatuses(now)
	for _, e := range a.replica.Services(dst, nil) {
		if e.Service.Kind == "connect-proxy" || !passing(e) {
			continue
		}
		inst := instance{Origin: e.Origin, ID: e.Service.ID, Node: e.Node.Name}
		if e.Origin == a.id {
			inst.DistKnown = true
		} else {
			if _, ok := a.view.addr(e.Origin); !ok {
				continue
			}
			if a.members != nil {
				if st, ok := statuses[e.Node.Name]; ok && st != gossip.StatusAlive {
					continue
				}
				inst.Dist, inst.DistKnown = a.members.Distance(e.Node.Name)
			}
		}
		dp.mu.Lock()
		inst.Open = dp.instOpen[inst.key()]
		inst.Failing = now.Before(dp.failing[e.Origin])
		dp.mu.Unlock()
		out = append(out, inst)
	}
	return out
}

// memberStatusTTL is how long a snapshot of membership statuses serves
// new connections. Listing members costs ~10 µs; a peer that died within
// the TTL is caught by the failed stream open and the failing mark.
const memberStatusTTL = 250 * time.Millisecond

// memberStatuses returns membership's status by node name, from a snapshot
// at most memberStatusTTL old.
func (dp *dataPlane) memberStatuses(now time.Time) map[string]gossip.MemberStatus {
	dp.mu.Lock()
	if dp.statuses != nil && now.Sub(dp.statusesAt) < memberStatusTTL {
		st := dp.statuses
		dp.mu.Unlock()
		return st
	}
	dp.mu.Unlock()
	if dp.a.members == nil {
		return nil
	}
	st := make(map[string]gossip.MemberStatus)
	for _, m := range dp.a.members.Members() {
		st[m.Name] = m.Status
	}
	dp.mu.Lock()
	dp.statuses, dp.statusesAt = st, now
	dp.mu.Unlock()
	return st
}
