package peer

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"

	"github.com/peerd/peerd/crdt"
)

// upstreamSpec is one upstream listener the agent runs for a local service:
// connections accepted on Bind are carried to an instance of Destination,
// as Source.
type upstreamSpec struct {
	Bind        netip.AddrPort
	Source      string // source service name (the service the sidecar fronts)
	SourceID    string // local service instance ID that declared the upstream
	Destination string // destination service name
	Datacenter  string // empty or the local one: registration refuses others
}

func (u upstreamSpec) String() string {
	return fmt.Sprintf("%s→%s@%s", u.Source, u.Destination, u.Bind)
}

// defaultBindAddr is where an upstream listens when the definition gives no
// local_bind_address, as in Consul.
var defaultBindAddr = netip.AddrFrom4([4]byte{127, 0, 0, 1})

// upstreamsOf returns the upstream listeners declared by a node's own
// services: the upstreams of each service's connect.sidecar_service.proxy
// and of every service of Kind "connect-proxy". Two declarations of the same
// bind address keep the first in service ID order (a sidecar registered both
// nested and as its own service declares the same listeners twice); bad
// entries are returned as problems, not fatal. Pure: no I/O.
func upstreamsOf(services []crdt.ServiceEntry) (specs []upstreamSpec, problems []string) {
	seen := map[netip.AddrPort]upstreamSpec{}
	add := func(src, srcID string, ups []crdt.Upstream) {
		for _, u := range ups {
			if u.DestinationName == "" || u.LocalBindPort <= 0 || u.LocalBindPort > 65535 {
				problems = append(problems, fmt.Sprintf("service %s: upstream %q: destination_name and local_bind_port (1-65535) are required", srcID, u.DestinationName))
				continue
			}
			ip := defaultBindAddr
			if u.LocalBindAddress != "" {
				a, err := netip.ParseAddr(u.LocalBindAddress)
				if err != nil {
					problems = append(problems, fmt.Sprintf("service %s: upstream %s: local_bind_address %q is not an IP address", srcID, u.DestinationName, u.LocalBindAddress))
					continue
				}
				ip = a
			}
			spec := upstreamSpec{Bind: netip.AddrPortFrom(ip, uint16(u.LocalBindPort)), Source: src, SourceID: srcID,
				Destination: u.DestinationName, Datacenter: u.Datacenter}
			if old, dup := seen[spec.Bind]; dup {
				if old.Source != spec.Source || old.Destination != spec.Destination {
					problems = append(problems, fmt.Sprintf("service %s: upstream %s: %s is already the listener of %s", srcID, u.DestinationName, spec.Bind, old))
				}
				continue
			}
			seen[spec.Bind] = spec
			specs = append(specs, spec)
		}
	}
	sorted := append([]crdt.ServiceEntry(nil), services...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Service.ID < sorted[j].Service.ID })
	for _, e := range sorted {
		s := e.Service
		if c := s.Connect; c != nil && c.SidecarService != nil && c.SidecarService.Proxy != nil {
			add(s.Name, s.ID, c.SidecarService.Proxy.Upstreams)
		}
		if s.Kind == "connect-proxy" && s.Proxy != nil && s.Proxy.DestinationServiceName != "" {
			id := s.Proxy.DestinationServiceID
			if id == "" {
				id = s.ID
			}
			add(s.Proxy.DestinationServiceName, id, s.Proxy.Upstreams)
		}
	}
	return specs, problems
}

// localTarget is where the destination side forwards a connection for one
// of its service instances: the sidecar's local_service_address/port when
// declared, else the service's own address and port; an empty address is
// 127.0.0.1.
func localTarget(s crdt.Service) (string, bool) {
	addr, port := s.Address, s.Port
	if c := s.Connect; c != nil && c.SidecarService != nil && c.SidecarService.Proxy != nil {
		p := c.SidecarService.Proxy
		if p.LocalServicePort > 0 {
			addr, port = p.LocalServiceAddress, p.LocalServicePort
		}
	}
	if port <= 0 || port > 65535 {
		return "", false
	}
	if addr == "" {
		addr = "127.0.0.1"
	}
	if strings.Contains(addr, ":") && !strings.HasPrefix(addr, "[") {
		addr = "[" + addr + "]"
	}
	return fmt.Sprintf("%s:%d", addr, port), true
}

// isSourceOf reports whether a service instance lets its node act as
// service name: the service itself, or a connect-proxy fronting it.
func isSourceOf(s crdt.Service, name string) bool {
	if s.Name == name && s.Kind != "connect-proxy" {
		return true
	}
	return s.Kind == "connect-proxy" && s.Proxy != nil && s.Proxy.DestinationServiceName == name
}
