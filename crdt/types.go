package crdt

// Node is a node's own record, written only by that node (origin).
type Node struct {
	Name    string            `cbor:"1,keyasint,omitempty"`
	Address string            `cbor:"2,keyasint,omitempty"`
	Meta    map[string]string `cbor:"3,keyasint,omitempty"`
	// Cert is the node's published certificate chain; opaque to crdt.
	Cert []byte `cbor:"4,keyasint,omitempty"`
	// ConnectCA is the node's self-signed X.509 CA certificate (DER) for
	// Connect leaf certificates; opaque to crdt. Absent in records of
	// agents that do not publish one (docs/WIRE.md, "Node record").
	ConnectCA []byte `cbor:"5,keyasint,omitempty"`
}

// Weights are Consul's DNS SRV weights.
type Weights struct {
	Passing int `cbor:"1,keyasint,omitempty"`
	Warning int `cbor:"2,keyasint,omitempty"`
}

// Upstream is one Connect upstream of a sidecar proxy.
type Upstream struct {
	DestinationName  string `cbor:"1,keyasint,omitempty"`
	LocalBindAddress string `cbor:"2,keyasint,omitempty"`
	LocalBindPort    int    `cbor:"3,keyasint,omitempty"`
	Datacenter       string `cbor:"4,keyasint,omitempty"`
}

// Proxy is the Connect proxy configuration of a service (Kind
// "connect-proxy") or of its sidecar.
type Proxy struct {
	DestinationServiceName string         `cbor:"1,keyasint,omitempty"`
	DestinationServiceID   string         `cbor:"2,keyasint,omitempty"`
	LocalServiceAddress    string         `cbor:"3,keyasint,omitempty"`
	LocalServicePort       int            `cbor:"4,keyasint,omitempty"`
	Upstreams              []Upstream     `cbor:"5,keyasint,omitempty"`
	Config                 map[string]any `cbor:"6,keyasint,omitempty"`
}

// Connect is a service's Connect block.
type Connect struct {
	Native bool `cbor:"1,keyasint,omitempty"`
	// SidecarService, when set, is the sidecar registered with the service.
	SidecarService *Service `cbor:"2,keyasint,omitempty"`
}

// Service is one service instance, written only by the node that runs it.
type Service struct {
	ID                string            `cbor:"1,keyasint,omitempty"`
	Name              string            `cbor:"2,keyasint,omitempty"`
	Tags              []string          `cbor:"3,keyasint,omitempty"`
	Address           string            `cbor:"4,keyasint,omitempty"`
	Port              int               `cbor:"5,keyasint,omitempty"`
	Meta              map[string]string `cbor:"6,keyasint,omitempty"`
	Weights           Weights           `cbor:"7,keyasint,omitempty"`
	Kind              string            `cbor:"8,keyasint,omitempty"` // "" or "connect-proxy"
	EnableTagOverride bool              `cbor:"9,keyasint,omitempty"`
	Connect           *Connect          `cbor:"10,keyasint,omitempty"`
	Proxy             *Proxy            `cbor:"11,keyasint,omitempty"`
}

// Check states, as in Consul.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

// Check is one health check, written only by the node that runs it. An
// empty ServiceID makes it a node-level check.
type Check struct {
	ID          string   `cbor:"1,keyasint,omitempty"`
	Name        string   `cbor:"2,keyasint,omitempty"`
	ServiceID   string   `cbor:"3,keyasint,omitempty"`
	ServiceName string   `cbor:"4,keyasint,omitempty"`
	Status      string   `cbor:"5,keyasint,omitempty"`
	Output      string   `cbor:"6,keyasint,omitempty"`
	Notes       string   `cbor:"7,keyasint,omitempty"`
	ServiceTags []string `cbor:"8,keyasint,omitempty"`
	Type        string   `cbor:"9,keyasint,omitempty"`
}

// kvBody is the replicated body of a KV write.
type kvBody struct {
	Value []byte `cbor:"1,keyasint,omitempty"`
	Flags uint64 `cbor:"2,keyasint,omitempty"`
}

// KVPair is a KV read result with Consul's metadata. CreateIndex and
// ModifyIndex are local indexes of this replica (see Replica.Index).
type KVPair struct {
	Key         string
	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64 // always 0: peerd has no sessions
	Flags       uint64
	Value       []byte
	// Origin and HLC identify the winning write.
	Origin string
	HLC    HLC
	// Conflicts are concurrent writes that lost the (HLC, origin) order and
	// stay visible until a write that has seen them supersedes them.
	Conflicts []KVSibling
}

// KVSibling is a losing concurrent KV write.
type KVSibling struct {
	Value  []byte
	Flags  uint64
	Origin string
	HLC    HLC
}

// NodeEntry is a node record with its owner.
type NodeEntry struct {
	Origin string
	Node   Node
}

// ServiceEntry is one instance with its node and the checks that apply to
// it (its own checks and the node-level checks of its node).
type ServiceEntry struct {
	Origin  string
	Node    Node
	Service Service
	Checks  []CheckEntry
}

// CheckEntry is a check with its owner.
type CheckEntry struct {
	Origin string
	Check  Check
}
