package peer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/netip"

	"github.com/peerd/peerd/crdt"
)

// JSON shapes of Consul's API (github.com/hashicorp/consul/api), written by
// peerd. Field names and nesting match Consul's; empty lists are [] and
// empty maps {} where Consul sends them so.

// apiAgentService is api.AgentService: the service in agent reads and in
// health entries (field "Service" holds the name).
type apiAgentService struct {
	Kind              string `json:",omitempty"`
	ID                string
	Service           string
	Tags              []string
	Meta              map[string]string
	Port              int
	Address           string
	TaggedAddresses   map[string]ServiceAddress `json:",omitempty"`
	Weights           Weights
	EnableTagOverride bool
	Proxy             *apiProxy   `json:",omitempty"`
	Connect           *apiConnect `json:",omitempty"`
	CreateIndex       uint64      `json:",omitempty"`
	ModifyIndex       uint64      `json:",omitempty"`
	ContentHash       string      `json:",omitempty"`
	Datacenter        string      `json:",omitempty"`
}

// apiProxy is api.AgentServiceConnectProxyConfig.
type apiProxy struct {
	DestinationServiceName string         `json:",omitempty"`
	DestinationServiceID   string         `json:",omitempty"`
	LocalServiceAddress    string         `json:",omitempty"`
	LocalServicePort       int            `json:",omitempty"`
	Mode                   string         `json:",omitempty"`
	Config                 map[string]any `json:",omitempty"`
	Upstreams              []apiUpstream  `json:",omitempty"`
	MeshGateway            struct{}
	Expose                 struct{}
}

// apiUpstream is api.Upstream.
type apiUpstream struct {
	DestinationType  string `json:",omitempty"`
	DestinationName  string
	Datacenter       string `json:",omitempty"`
	LocalBindAddress string `json:",omitempty"`
	LocalBindPort    int    `json:",omitempty"`
	MeshGateway      struct{}
}

// apiConnect is api.AgentServiceConnect.
type apiConnect struct {
	Native         bool             `json:",omitempty"`
	SidecarService *apiAgentService `json:",omitempty"`
}

// apiNode is api.Node (health entries, catalog node reads).
type apiNode struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

// apiServiceEntry is api.ServiceEntry (/v1/health/service).
type apiServiceEntry struct {
	Node    apiNode
	Service apiAgentService
	Checks  []apiHealthCheck
}

// apiCatalogService is api.CatalogService (/v1/catalog/service): the
// node is a string and service fields are prefixed.
type apiCatalogService struct {
	ID                       string
	Node                     string
	Address                  string
	Datacenter               string
	TaggedAddresses          map[string]string
	NodeMeta                 map[string]string
	ServiceKind              string `json:",omitempty"`
	ServiceID                string
	ServiceName              string
	ServiceAddress           string
	ServiceTaggedAddresses   map[string]ServiceAddress `json:",omitempty"`
	ServiceTags              []string
	ServiceMeta              map[string]string
	ServicePort              int
	ServiceWeights           Weights
	ServiceEnableTagOverride bool
	ServiceProxy             *apiProxy `json:",omitempty"`
	CreateIndex              uint64
	ModifyIndex              uint64
}

// apiAgentCheck is api.AgentCheck (/v1/agent/checks).
type apiAgentCheck struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	ExposedPort int
	Definition  apiCheckDefinition
}

// apiCheckDefinition is api.HealthCheckDefinition.
type apiCheckDefinition struct {
	HTTP                           string              `json:",omitempty"`
	Header                         map[string][]string `json:",omitempty"`
	Method                         string              `json:",omitempty"`
	Body                           string              `json:",omitempty"`
	TLSServerName                  string              `json:",omitempty"`
	TLSSkipVerify                  bool                `json:",omitempty"`
	TCP                            string              `json:",omitempty"`
	Interval                       string              `json:",omitempty"`
	Timeout                        string              `json:",omitempty"`
	DeregisterCriticalServiceAfter string              `json:",omitempty"`
}

func strs(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func strMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// serviceTaggedAddresses is what Consul adds for a service with an address.
func serviceTaggedAddresses(addr string, port int) map[string]ServiceAddress {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil
	}
	if a.Is4() {
		return map[string]ServiceAddress{"lan_ipv4": {addr, port}, "wan_ipv4": {addr, port}}
	}
	return map[string]ServiceAddress{"lan_ipv6": {addr, port}, "wan_ipv6": {addr, port}}
}

// nodeTaggedAddresses is what Consul reports for a node address.
func nodeTaggedAddresses(addr string) map[string]string {
	m := map[string]string{"lan": addr, "wan": addr}
	if a, err := netip.ParseAddr(addr); err == nil {
		if a.Is4() {
			m["lan_ipv4"], m["wan_ipv4"] = addr, addr
		} else {
			m["lan_ipv6"], m["wan_ipv6"] = addr, addr
		}
	}
	return m
}

func toAPIProxy(p *crdt.Proxy) *apiProxy {
	if p == nil {
		return nil
	}
	out := &apiProxy{DestinationServiceName: p.DestinationServiceName, DestinationServiceID: p.DestinationServiceID,
		LocalServiceAddress: p.LocalServiceAddress, LocalServicePort: p.LocalServicePort, Config: p.Config}
	for _, u := range p.Upstreams {
		out.Upstreams = append(out.Upstreams, apiUpstream{DestinationType: "service", DestinationName: u.DestinationName,
			Datacenter: u.Datacenter, LocalBindAddress: u.LocalBindAddress, LocalBindPort: u.LocalBindPort})
	}
	return out
}

// toAPIService converts a replicated service to api.AgentService.
func toAPIService(s crdt.Service, dc string, idx uint64) apiAgentService {
	out := apiAgentService{
		Kind: s.Kind, ID: s.ID, Service: s.Name, Tags: strs(s.Tags), Meta: strMap(s.Meta), Port: s.Port,
		Address: s.Address, TaggedAddresses: serviceTaggedAddresses(s.Address, s.Port),
		Weights:           Weights{Passing: s.Weights.Passing, Warning: s.Weights.Warning},
		EnableTagOverride: s.EnableTagOverride, Proxy: toAPIProxy(s.Proxy),
		CreateIndex: idx, ModifyIndex: idx, Datacenter: dc,
	}
	if out.Weights.Passing == 0 && out.Weights.Warning == 0 {
		out.Weights = Weights{Passing: 1, Warning: 1}
	}
	if s.Connect != nil {
		out.Connect = &apiConnect{Native: s.Connect.Native}
		if s.Connect.SidecarService != nil {
			sc := toAPIService(*s.Connect.SidecarService, dc, idx)
			out.Connect.SidecarService = &sc
		}
	}
	return out
}

// contentHash is a stable hash of a service, as Consul's ContentHash.
func contentHash(s apiAgentService) string {
	s.ContentHash, s.CreateIndex, s.ModifyIndex = "", 0, 0
	b, _ := json.Marshal(s)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

func (a *Agent) toAPINode(n crdt.NodeEntry, idx uint64) apiNode {
	return apiNode{ID: n.Origin, Node: n.Node.Name, Address: n.Node.Address, Datacenter: a.cfg.Datacenter,
		TaggedAddresses: nodeTaggedAddresses(n.Node.Address), Meta: strMap(n.Node.Meta), CreateIndex: idx, ModifyIndex: idx}
}
