package peer

import (
	"net/netip"
	"strings"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/gossip"
	"github.com/peerd/peerd/resolver"
)

// dnsSource answers the resolver from the local replica and membership.
type dnsSource struct{ a *Agent }

var _ resolver.Source = dnsSource{}

func (s dnsSource) AppendServiceInstances(dst []resolver.Instance, name string) []resolver.Instance {
	a := s.a
	entries := a.replica.Services(name, nil)
	if len(entries) == 0 {
		for n := range a.replica.ServiceNames() {
			if strings.EqualFold(n, name) && n != name {
				entries = append(entries, a.replica.Services(n, nil)...)
			}
		}
	}
	if len(entries) == 0 {
		return dst
	}
	// One membership snapshot per query, not one per instance.
	status := a.memberStatusMap()
	for _, e := range entries {
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

func (s dnsSource) Node(name string) (resolver.Node, bool) {
	for _, n := range s.a.replica.Nodes() {
		if strings.EqualFold(n.Node.Name, name) {
			addr, _ := netip.ParseAddr(n.Node.Address)
			return resolver.Node{Name: n.Node.Name, Address: addr, Meta: n.Node.Meta}, true
		}
	}
	return resolver.Node{}, false
}

// ConnectUpstream answers NAME.connect.consul with the local upstream
// listener of this agent's data plane that leads to service NAME.
func (s dnsSource) ConnectUpstream(name string) (netip.AddrPort, bool) {
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
