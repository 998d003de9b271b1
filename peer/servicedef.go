package peer

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/peerd/peerd/crdt"
)

// ServiceDefinition is a service as Consul's agent accepts it, from a
// config file (`service {}` / `services []`) or from
// PUT /v1/agent/service/register. Field names follow Consul's; decoding is
// lenient (see loose.go).
type ServiceDefinition struct {
	Kind              string
	ID                string `loose:"ServiceID"`
	Name              string `loose:"ServiceName,Service"`
	Tags              []string
	Address           string
	Port              int
	Meta              map[string]string
	TaggedAddresses   map[string]ServiceAddress
	EnableTagOverride bool
	Weights           *Weights
	Check             []CheckDefinition // one object in JSON; HCL may repeat the block
	Checks            []CheckDefinition
	Connect           *ConnectDefinition
	Proxy             *ProxyDefinition

	// Accepted and ignored (Consul Enterprise or unsupported).
	Namespace  any `json:"-"`
	Partition  any `json:"-"`
	Locality   any `json:"-"`
	SocketPath any `json:"-"`
	Token      any `json:"-"`
}

// ServiceAddress is a tagged address of a service.
type ServiceAddress struct {
	Address string
	Port    int
}

// Weights are DNS SRV weights by health.
type Weights struct {
	Passing int
	Warning int
}

// ConnectDefinition is a service's Connect block.
type ConnectDefinition struct {
	Native         bool
	SidecarService *ServiceDefinition
}

// ProxyDefinition is the proxy block of a connect-proxy or sidecar service.
type ProxyDefinition struct {
	DestinationServiceName string
	DestinationServiceID   string
	LocalServiceAddress    string
	LocalServicePort       int
	Upstreams              []UpstreamDefinition
	Config                 map[string]any
	Mode                   any `json:"-"`
	MeshGateway            any `json:"-"`
	Expose                 any `json:"-"`
	TransparentProxy       any `json:"-"`
}

// UpstreamDefinition is one upstream of a proxy.
type UpstreamDefinition struct {
	DestinationName      string
	DestinationType      string
	Datacenter           string
	LocalBindAddress     string
	LocalBindPort        int
	Config               map[string]any
	DestinationNamespace any `json:"-"`
	DestinationPartition any `json:"-"`
	MeshGateway          any `json:"-"`
}

// validate checks an upstream as Consul does at registration, and refuses
// what peerd cannot carry: a prepared query as the destination.
func (u UpstreamDefinition) validate() error {
	switch u.DestinationType {
	case "", "service":
	case "prepared_query":
		return errors.New("destination_type prepared_query is not supported: peerd has no prepared queries; name the service")
	default:
		return fmt.Errorf("destination_type %q is not supported (want service)", u.DestinationType)
	}
	if u.DestinationName == "" {
		return errors.New("destination_name is required")
	}
	if u.LocalBindPort < 1 || u.LocalBindPort > 65535 {
		return fmt.Errorf("local_bind_port %d: want 1-65535", u.LocalBindPort)
	}
	if u.LocalBindAddress != "" {
		if _, err := netip.ParseAddr(u.LocalBindAddress); err != nil {
			return fmt.Errorf("local_bind_address %q is not an IP address", u.LocalBindAddress)
		}
	}
	return nil
}

// checkDatacenter refuses upstreams in a datacenter other than local: a
// peerd mesh is one datacenter, and there are no mesh gateways to reach
// another. Empty means the local one, as in Consul.
func (s *ServiceDefinition) checkDatacenter(local string) error {
	for _, d := range []*ServiceDefinition{s, sidecarOf(s)} {
		if d == nil || d.Proxy == nil {
			continue
		}
		for _, u := range d.Proxy.Upstreams {
			if u.Datacenter != "" && u.Datacenter != local {
				return fmt.Errorf("upstream %s: datacenter %q: this mesh is datacenter %q, and peerd has no mesh gateways to reach another", u.DestinationName, u.Datacenter, local)
			}
		}
	}
	return nil
}

func sidecarOf(s *ServiceDefinition) *ServiceDefinition {
	if s.Connect == nil {
		return nil
	}
	return s.Connect.SidecarService
}

// CheckDefinition is a health check as Consul accepts it: inside a
// service, standalone in a config file, or from
// PUT /v1/agent/check/register.
type CheckDefinition struct {
	ID                             string `loose:"CheckID"`
	Name                           string
	Notes                          string
	ServiceID                      string
	Status                         string
	Args                           []string `loose:"ScriptArgs"`
	Interval                       Duration
	Timeout                        Duration
	TTL                            Duration
	HTTP                           string
	Header                         map[string][]string
	Method                         string
	Body                           string
	TLSServerName                  string
	TLSSkipVerify                  bool
	TCP                            string
	GRPC                           string
	GRPCUseTLS                     bool
	SuccessBeforePassing           int
	FailuresBeforeWarning          int
	FailuresBeforeCritical         int
	DeregisterCriticalServiceAfter Duration

	// Accepted but refused by validate as unsupported.
	DockerContainerID string
	Shell             string
	AliasNode         string
	AliasService      string
	H2PING            string
	UDP               string
	OSService         string
	TCPUseTLS         bool
	H2PingUseTLS      bool
	Namespace         any `json:"-"`
	Partition         any `json:"-"`
	Token             any `json:"-"`
}

// Check types as Consul reports them in HealthCheck.Type.
const (
	checkTypeTTL    = "ttl"
	checkTypeHTTP   = "http"
	checkTypeTCP    = "tcp"
	checkTypeScript = "script"
	checkTypeGRPC   = "grpc"
	checkTypeMaint  = "maintenance"
)

// Type is the check's kind, derived from which fields are set.
func (c *CheckDefinition) Type() string {
	switch {
	case c.TTL > 0:
		return checkTypeTTL
	case c.HTTP != "":
		return checkTypeHTTP
	case c.TCP != "":
		return checkTypeTCP
	case len(c.Args) > 0:
		return checkTypeScript
	case c.GRPC != "":
		return checkTypeGRPC
	}
	return ""
}

// minCheckInterval is Consul's floor for check intervals.
const minCheckInterval = time.Second

// defaultCheckTimeout applies to HTTP, TCP, gRPC and script checks.
const defaultCheckTimeout = 10 * time.Second

// validate checks a check definition and fills defaults (interval floor,
// status, failure thresholds). allowScripts is enable_script_checks.
func (c *CheckDefinition) validate(allowScripts bool) error {
	switch {
	case c.DockerContainerID != "" || c.Shell != "":
		return errors.New("docker checks are not supported by peerd")
	case c.AliasNode != "" || c.AliasService != "":
		return errors.New("alias checks are not supported by peerd")
	case c.H2PING != "" || c.UDP != "" || c.OSService != "":
		return errors.New("h2ping, udp and os_service checks are not supported by peerd")
	}
	kinds := 0
	for _, set := range []bool{c.TTL > 0, c.HTTP != "", c.TCP != "", len(c.Args) > 0, c.GRPC != ""} {
		if set {
			kinds++
		}
	}
	if kinds == 0 {
		return errors.New("a check needs one of TTL, HTTP, TCP, Args (script) or GRPC")
	}
	if kinds > 1 {
		return errors.New("a check may set only one of TTL, HTTP, TCP, Args (script) and GRPC")
	}
	t := c.Type()
	if t != checkTypeTTL {
		if c.Interval <= 0 {
			return fmt.Errorf("%s check needs an interval", t)
		}
		if time.Duration(c.Interval) < minCheckInterval {
			c.Interval = Duration(minCheckInterval)
		}
	}
	if t == checkTypeScript && !allowScripts {
		return errors.New("script checks are disabled: set enable_script_checks = true in the agent configuration")
	}
	if t == checkTypeGRPC {
		target, _, _ := strings.Cut(c.GRPC, "/")
		if _, _, err := net.SplitHostPort(target); err != nil {
			return fmt.Errorf("gRPC check address %q: %v", c.GRPC, err)
		}
	}
	if t == checkTypeHTTP {
		c.HTTP = unbracketIPv4(c.HTTP)
		u, err := url.Parse(c.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("HTTP check URL %q is not an http(s) URL", c.HTTP)
		}
	}
	if t == checkTypeTCP {
		if _, _, err := net.SplitHostPort(c.TCP); err != nil {
			return fmt.Errorf("TCP check address %q: %v", c.TCP, err)
		}
	}
	switch c.Status {
	case "":
		c.Status = crdt.StatusCritical
	case crdt.StatusPassing, crdt.StatusWarning, crdt.StatusCritical:
	default:
		return fmt.Errorf("invalid initial status %q (want passing, warning or critical)", c.Status)
	}
	if c.SuccessBeforePassing < 0 || c.FailuresBeforeWarning < 0 || c.FailuresBeforeCritical < 0 {
		return errors.New("success/failure thresholds must not be negative")
	}
	if c.FailuresBeforeWarning == 0 {
		c.FailuresBeforeWarning = c.FailuresBeforeCritical
	}
	if c.Method == "" && t == checkTypeHTTP {
		c.Method = "GET"
	}
	return nil
}

// validate checks a service definition and fills defaults: ID from Name,
// check IDs and names as Consul numbers them ("service:ID", "service:ID:2").
func (s *ServiceDefinition) validate(allowScripts bool) error {
	if s.Name == "" {
		return errors.New("missing service name")
	}
	if strings.ContainsAny(s.Name, "/\x00") {
		return fmt.Errorf("service name %q contains '/' or NUL", s.Name)
	}
	if s.ID == "" {
		s.ID = s.Name
	}
	if strings.ContainsAny(s.ID, "/\x00") {
		return fmt.Errorf("service ID %q contains '/' or NUL", s.ID)
	}
	if s.Port < 0 || s.Port > 65535 {
		return fmt.Errorf("port %d out of range", s.Port)
	}
	switch s.Kind {
	case "", "connect-proxy":
	default:
		return fmt.Errorf("service kind %q is not supported (want empty or connect-proxy)", s.Kind)
	}
	if s.Kind == "connect-proxy" && (s.Proxy == nil || s.Proxy.DestinationServiceName == "") {
		return errors.New("a connect-proxy service needs Proxy.DestinationServiceName")
	}
	if s.Weights != nil && (s.Weights.Passing < 0 || s.Weights.Warning < 0) {
		return errors.New("weights must not be negative")
	}
	if s.Proxy != nil {
		for i, u := range s.Proxy.Upstreams {
			if err := u.validate(); err != nil {
				return fmt.Errorf("upstream %d (%s): %w", i, u.DestinationName, err)
			}
		}
	}
	if len(s.Check) > 0 {
		s.Checks = append(append([]CheckDefinition{}, s.Check...), s.Checks...)
		s.Check = nil
	}
	for i := range s.Checks {
		c := &s.Checks[i]
		if c.ID == "" {
			c.ID = "service:" + s.ID
			if len(s.Checks) > 1 {
				c.ID = fmt.Sprintf("service:%s:%d", s.ID, i+1)
			}
		}
		if c.Name == "" {
			c.Name = fmt.Sprintf("Service '%s' check", s.Name)
		}
		c.ServiceID = s.ID
		if err := c.validate(allowScripts); err != nil {
			return fmt.Errorf("check %q: %w", c.ID, err)
		}
	}
	if s.Connect != nil && s.Connect.SidecarService != nil {
		sc := s.Connect.SidecarService
		if sc.Name == "" {
			sc.Name = s.Name + "-sidecar-proxy"
		}
		if sc.ID == "" {
			sc.ID = s.ID + "-sidecar-proxy"
		}
		sc.Kind = "connect-proxy"
		if sc.Proxy == nil {
			sc.Proxy = &ProxyDefinition{}
		}
		if sc.Proxy.DestinationServiceName == "" {
			sc.Proxy.DestinationServiceName = s.Name
		}
		if sc.Proxy.DestinationServiceID == "" {
			sc.Proxy.DestinationServiceID = s.ID
		}
		if sc.Proxy.LocalServicePort == 0 {
			sc.Proxy.LocalServicePort = s.Port
		}
		if sc.Address == "" {
			sc.Address = s.Address
		}
		if sc.Connect != nil && sc.Connect.SidecarService != nil {
			return errors.New("a sidecar service cannot have its own sidecar")
		}
		if err := sc.validate(allowScripts); err != nil {
			return fmt.Errorf("sidecar_service: %w", err)
		}
	}
	return nil
}

// toCRDT converts the definition into the replicated record.
func (s *ServiceDefinition) toCRDT() crdt.Service {
	out := crdt.Service{
		ID: s.ID, Name: s.Name, Tags: s.Tags, Address: s.Address, Port: s.Port,
		Meta: s.Meta, Kind: s.Kind, EnableTagOverride: s.EnableTagOverride,
	}
	if s.Weights != nil {
		out.Weights = crdt.Weights{Passing: s.Weights.Passing, Warning: s.Weights.Warning}
	} else {
		out.Weights = crdt.Weights{Passing: 1, Warning: 1}
	}
	if s.Proxy != nil {
		out.Proxy = s.Proxy.toCRDT()
	}
	if s.Connect != nil {
		out.Connect = &crdt.Connect{Native: s.Connect.Native}
		if s.Connect.SidecarService != nil {
			sc := s.Connect.SidecarService.toCRDT()
			out.Connect.SidecarService = &sc
		}
	}
	return out
}

func (p *ProxyDefinition) toCRDT() *crdt.Proxy {
	out := &crdt.Proxy{
		DestinationServiceName: p.DestinationServiceName, DestinationServiceID: p.DestinationServiceID,
		LocalServiceAddress: p.LocalServiceAddress, LocalServicePort: p.LocalServicePort, Config: p.Config,
	}
	for _, u := range p.Upstreams {
		out.Upstreams = append(out.Upstreams, crdt.Upstream{DestinationName: u.DestinationName,
			LocalBindAddress: u.LocalBindAddress, LocalBindPort: u.LocalBindPort, Datacenter: u.Datacenter})
	}
	return out
}

// ServiceFile is what one config file defines.
type ServiceFile struct {
	Services []ServiceDefinition
	Checks   []CheckDefinition
}

// serviceFileSchema is the part of an agent config file this package reads.
type serviceFileSchema struct {
	Service  []ServiceDefinition
	Services []ServiceDefinition
	Check    []CheckDefinition
	Checks   []CheckDefinition
}

// ServiceFileKeys are the top-level config keys ParseServiceFile reads;
// the agent's config parser leaves them to it.
var ServiceFileKeys = []string{"service", "services", "check", "checks"}

// ParseServiceFile reads the service and check definitions of one agent
// config file (HCL or JSON; other top-level keys are ignored). Keys inside
// a definition are checked: an unknown key, a bad duration or an invalid
// definition is an error naming the file and the line.
func ParseServiceFile(name string, b []byte, allowScripts bool) (ServiceFile, error) {
	n, err := hclToNode(b)
	if err != nil {
		return ServiceFile{}, fmt.Errorf("config: %s: %v", name, err)
	}
	// Keep only the keys we read, so that strict decoding does not trip
	// over the agent's own settings.
	top := &lnode{isObj: true, line: n.line}
	for _, kv := range n.obj {
		for _, k := range ServiceFileKeys {
			if normKey(kv.key) == k {
				top.obj = append(top.obj, kv)
			}
		}
	}
	var sch serviceFileSchema
	if err := (looseDecoder{strict: true}).decode(top, reflect.ValueOf(&sch).Elem(), ""); err != nil {
		return ServiceFile{}, fmt.Errorf("config: %s: %v", name, err)
	}
	var f ServiceFile
	f.Services = append(sch.Service, sch.Services...)
	f.Checks = append(sch.Check, sch.Checks...)
	lineOf := func(key string, i int) int {
		j := 0
		for _, kv := range top.obj {
			if normKey(kv.key) != key {
				continue
			}
			items := []*lnode{kv.val}
			if kv.val.isList {
				items = kv.val.list
			}
			for _, it := range items {
				if j == i {
					return it.line
				}
				j++
			}
		}
		return 0
	}
	nsvc := len(sch.Service)
	for i := range f.Services {
		if err := f.Services[i].validate(allowScripts); err != nil {
			line := lineOf("service", i)
			if i >= nsvc {
				line = lineOf("services", i-nsvc)
			}
			return ServiceFile{}, fmt.Errorf("config: %s:%d: service %q: %v", name, line, f.Services[i].Name, err)
		}
	}
	nchk := len(sch.Check)
	for i := range f.Checks {
		c := &f.Checks[i]
		if c.ID == "" {
			c.ID = c.Name
		}
		if err := validateNodeCheck(c, allowScripts); err != nil {
			line := lineOf("check", i)
			if i >= nchk {
				line = lineOf("checks", i-nchk)
			}
			return ServiceFile{}, fmt.Errorf("config: %s:%d: check %q: %v", name, line, c.ID, err)
		}
	}
	return f, nil
}

// validateNodeCheck validates a standalone check (node-level, or attached
// to a service by ServiceID).
func validateNodeCheck(c *CheckDefinition, allowScripts bool) error {
	if c.Name == "" {
		return errors.New("missing check name")
	}
	if c.ID == "" {
		c.ID = c.Name
	}
	if strings.ContainsAny(c.ID, "/\x00") {
		return fmt.Errorf("check ID %q contains '/' or NUL", c.ID)
	}
	return c.validate(allowScripts)
}

// unbracketIPv4 rewrites an IPv4 host written in brackets
// ("http://[127.0.0.1]:9998/health", as fabio registers its own check) to
// the plain form: Go's URL parser accepted it before Go 1.26 and refuses
// it now, and Consul agents built with older Go run such checks.
func unbracketIPv4(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://[")
	if !ok {
		return raw
	}
	host, tail, ok := strings.Cut(rest, "]")
	if !ok {
		return raw
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.Is4() {
		return raw
	}
	return scheme + "://" + host + tail
}
