package peer

import (
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/gossip"
	"github.com/peerd/peerd/resolver"
)

// dnsSource answers the resolver from the local replica and membership.
// The instances of a service are built once and kept while the service's
// replica scope (instances, checks, node records) and the membership epoch
// (api_block.go: bumped after every serf event that changes a status)
// are unchanged, so a busy DNS client costs a map lookup and a copy, not a
// walk of the replica and the member list per query.
type dnsSource struct {
	a *Agent

	mu    sync.Mutex
	cache map[string]dnsCached // guarded by mu; by exact service name
}

// dnsCached is one service's instances and the indexes they were built at.
type dnsCached struct {
	index, epoch uint64
	inst         []resolver.Instance
}

// dnsCacheMax bounds the cache; past it the cache is emptied (the names
// queried vary little).
const dnsCacheMax = 1024

var _ resolver.Source = (*dnsSource)(nil)

func newDNSSource(a *Agent) *dnsSource {
	return &dnsSource{a: a, cache: map[string]dnsCached{}}
}

func (s *dnsSource) AppendServiceInstances(dst []resolver.Instance, name string) []resolver.Instance {
	a := s.a
	// Epoch first, then the index: a change between the two reads makes
	// the entry look older than it is (rebuilt next time), never newer.
	epoch, _ := a.local.members.current()
	index := a.replica.ScopeIndex(crdt.ScopeService(name))
	s.mu.Lock()
	c, ok := s.cache[name]
	s.mu.Unlock()
	if ok && c.index == index && c.epoch == epoch {
		return append(dst, c.inst...)
	}
	entries := a.replica.Services(name, nil)
	if len(entries) == 0 {
		// Consul's names are case-insensitive in DNS; not cached (rare).
		for n := range a.replica.ServiceNames() {
			if strings.EqualFold(n, name) && n != name {
				entries = append(entries, a.replica.Services(n, nil)...)
			}
		}
		return s.instances(dst, entries)
	}
	start := len(dst)
	dst = s.instances(dst, entries)
	s.mu.Lock()
	if len(s.cache) >= dnsCacheMax {
		clear(s.cache)
	}
	s.cache[name] = dnsCached{index: index, epoch: epoch, inst: slices.Clone(dst[start:])}
	s.mu.Unlock()
	return dst
}

// instances appends the resolver's view of entries to dst.
func (s *dnsSource) instances(dst []resolver.Instance, entries []crdt.ServiceEntry) []resolver.Instance {
	if len(entries) == 0 {
		return dst
	}
	a := s.a
	// One membership snapshot per build, not one per instance.
	status := a.memberStatusMap()
	for _, e := range entries {
		if e.Node.Name == "" {
			continue // its node record has not arrived yet
		}
		inst := resolver.Instance{
			Node:    e.Node.Name,
			Port:    uint16(e.Service.Port),
			Tags:    e.Service.Tags,
			Status:  resolver.HealthPassing,
			Weights: resolver.Weights{Passing: clampU16(e.Service.Weights.Passing), Warning: clampU16(e.Service.Weights.Warning)},
		}
		inst.NodeAddress, _ = netip.ParseAddr(e.Node.Address)
		inst.ServiceAddress, _ = netip.ParseAddr(e.Service.Address)
		inst.NodeHealthy = e.Node.Name == a.cfg.NodeName || status[e.Node.Name] == gossip.StatusAlive
		for _, c := range e.Checks {
			switch c.Check.Status {
			case crdt.StatusCritical:
				inst.Status = resolver.HealthCritical
				if c.Check.ServiceID == "" {
					inst.NodeHealthy = false
				}
			case crdt.StatusWarning:
				if inst.Status == resolver.HealthPassing {
					inst.Status = resolver.HealthWarning
				}
			}
		}
		dst = append(dst, inst)
	}
	return dst
}

func (s *dnsSource) Node(name string) (resolver.Node, bool) {
	for _, n := range s.a.replica.Nodes() {
		// A node that left is not answered, as in the catalog (Consul
		// deregisters it); a failed one still is, as Consul's DNS does.
		if strings.EqualFold(n.Node.Name, name) && s.a.nodeVisible(n.Node.Name) {
			addr, _ := netip.ParseAddr(n.Node.Address)
			return resolver.Node{Name: n.Node.Name, Address: addr, Meta: n.Node.Meta}, true
		}
	}
	return resolver.Node{}, false
}

// ConnectUpstream answers NAME.connect.consul with the local upstream
// listener of this agent's data plane that leads to service NAME.
func (s *dnsSource) ConnectUpstream(name string) (netip.AddrPort, bool) {
	if s.a.proxy == nil {
		return netip.AddrPort{}, false
	}
	return s.a.proxy.upstreamFor(name)
}

func clampU16(v int) uint16 {
	switch {
	case v < 0:
		return 0
	case v > 65535:
		return 65535
	}
	return uint16(v)
}
