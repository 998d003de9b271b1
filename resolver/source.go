package resolver

import "net/netip"

// Source is what the resolver answers from. peer implements it over its
// replica; tests implement it over a map.
//
// Every method may be called concurrently from many query goroutines and
// must not block on the network: it reads local state only. The resolver
// never modifies what a Source returns and does not use it after the query
// that asked for it has been answered, so a Source may hand out slices, maps
// and strings that it shares with its own state (Tags, Meta) as long as it
// treats them as immutable (replaces rather than mutates them).
type Source interface {
	// AppendServiceInstances appends every registered instance of the
	// service called name (already lower-case; match it case-insensitively,
	// as Consul does) to dst and returns the extended slice. It returns all
	// of them, whatever their health: the resolver filters critical
	// instances, instances on failed nodes and, with Config.OnlyPassing,
	// warning ones, and it filters by tag. Appending into the caller's slice
	// lets the hot path reuse one buffer instead of allocating per query.
	AppendServiceInstances(dst []Instance, name string) []Instance

	// Node returns the node called name (lower-case; match it
	// case-insensitively) and whether it is known. Node lookups are not
	// filtered by health, as in Consul.
	Node(name string) (Node, bool)

	// ConnectUpstream returns the local address on which this agent's data
	// plane accepts connections for the service called name (the answer to
	// NAME.connect.<domain>), and whether there is one.
	ConnectUpstream(name string) (netip.AddrPort, bool)
}

// Health is the aggregated health of a service instance, the worst of its
// service-level checks (Consul's passing/warning/critical).
type Health uint8

// Health states. The zero value is HealthPassing: an instance with no checks
// is passing, as in Consul.
const (
	HealthPassing Health = iota
	HealthWarning
	HealthCritical
)

// String returns "passing", "warning" or "critical".
func (h Health) String() string {
	switch h {
	case HealthPassing:
		return "passing"
	case HealthWarning:
		return "warning"
	case HealthCritical:
		return "critical"
	}
	return "unknown"
}

// Instance is one registered instance of a service as the resolver needs it.
type Instance struct {
	// Node is the name of the node the instance runs on; it becomes the SRV
	// target NODE.node.DC.<domain> when the instance has no address of its
	// own.
	Node string
	// NodeAddress is the node's address, used when ServiceAddress is not
	// valid.
	NodeAddress netip.Addr
	// ServiceAddress is the instance's own address; the zero value means
	// "the node's address", as an empty Service.Address does in Consul.
	ServiceAddress netip.Addr
	// Port is the service port (SRV records).
	Port uint16
	// Tags are the instance's tags, matched case-insensitively by
	// TAG.NAME.service and _NAME._TAG.service queries.
	Tags []string
	// Status is the worst of the instance's service checks.
	Status Health
	// NodeHealthy must be true for the instance to be answered: false means
	// the node itself has failed (serf says failed/left, or a node-level
	// check is critical), and such instances are never returned. Note the
	// zero value is false: a Source must set it.
	NodeHealthy bool
	// Weights are the SRV weights for a passing and a warning instance;
	// zero means 1 (Consul's default weights are {Passing: 1, Warning: 1}).
	Weights Weights
}

// Weights are Consul's per-instance DNS SRV weights.
type Weights struct {
	// Passing is the SRV weight while the instance is passing; zero means 1.
	Passing uint16
	// Warning is the SRV weight while the instance is warning; zero means 1.
	Warning uint16
}

// Node is a node as NODE.node.<domain> answers it.
type Node struct {
	// Name is the node name.
	Name string
	// Address is the node's address (A or AAAA record).
	Address netip.Addr
	// Meta is the node metadata, answered as TXT records "key=value"; a key
	// starting with "rfc1035-" is answered as its bare value, as in Consul.
	Meta map[string]string
}

// address returns the address an instance is reached at.
func (in *Instance) address() netip.Addr {
	if in.ServiceAddress.IsValid() {
		return in.ServiceAddress.Unmap()
	}
	return in.NodeAddress.Unmap()
}

// weight returns the SRV weight of an instance in its current state.
func (in *Instance) weight() uint16 {
	w := in.Weights.Passing
	if in.Status == HealthWarning {
		w = in.Weights.Warning
	}
	if w == 0 {
		w = 1
	}
	return w
}
