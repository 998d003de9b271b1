package resolver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Defaults applied by Config's zero values.
const (
	DefaultAddr            = "127.0.0.1:8600"
	DefaultDomain          = "consul."
	DefaultDatacenter      = "dc1"
	DefaultUDPAnswerLimit  = 3
	DefaultRecursorTimeout = 2 * time.Second
)

// maxUDPAnswerLimit caps UDPAnswerLimit as Consul does: more than 8 records
// rarely help a client and only lengthen non-EDNS answers.
const maxUDPAnswerLimit = 8

// Config configures a Server. Every field's zero value is usable.
type Config struct {
	// Addr is the UDP and TCP listen address; "" means DefaultAddr
	// (127.0.0.1:8600, Consul's DNS port). Port 0 picks a free port, the
	// same for UDP and TCP (see Server.Addr).
	Addr string
	// Domain is the domain answered locally; "" means "consul.". A trailing
	// dot is added when missing; matching is case-insensitive.
	Domain string
	// Datacenter is the datacenter label accepted in NAME.service.DC.<domain>
	// and used in SRV targets; "" means "dc1". Queries naming another
	// datacenter get NXDOMAIN (peerd has no WAN federation).
	Datacenter string
	// NodeName is this agent's node name, the target of the NS record for
	// the domain; "" means the NS target is "ns.<domain>".
	NodeName string
	// NSAddress is the address answered for the NS target; the zero value
	// means the listen address's IP (127.0.0.1 when listening on all
	// addresses).
	NSAddress netip.Addr
	// OnlyPassing drops warning instances too (Consul's only_passing); false
	// returns passing and warning instances, Consul's default. Critical
	// instances and instances on failed nodes are never returned.
	OnlyPassing bool
	// NodeTTL is the TTL of node records (Consul's node_ttl); 0 means 0,
	// Consul's default: clients re-ask every time.
	NodeTTL time.Duration
	// ServiceTTL is the TTL of service, connect and addr records (Consul's
	// service_ttl); 0 means 0, Consul's default.
	ServiceTTL time.Duration
	// ARecordLimit caps the number of A/AAAA answers for service lookups,
	// over UDP and TCP (Consul's a_record_limit); 0 means no limit.
	ARecordLimit int
	// UDPAnswerLimit caps the answers of a UDP response to a query without
	// EDNS0 (Consul's udp_answer_limit); 0 means 3, Consul's default, and
	// values above 8 are treated as 8. Trimmed answers set the TC bit so the
	// client can retry over TCP.
	UDPAnswerLimit int
	// Recursors are upstream DNS servers ("host" or "host:port", port 53 by
	// default) asked, in order, for names outside Domain; empty means such
	// queries are REFUSED.
	Recursors []string
	// RecursorTimeout bounds each recursor exchange; 0 means 2 s (Consul's
	// recursor_timeout).
	RecursorTimeout time.Duration
	// NodeRTT, when not nil, turns on nearest-first ordering: after the
	// random shuffle, instances are stably sorted by the round-trip time to
	// their node (for example from serf's network coordinates); nodes with
	// no estimate (ok false) go last. It is called from many goroutines at
	// once and must not block. nil means random order only, like Consul.
	NodeRTT func(node string) (rtt time.Duration, ok bool)
	// Now is the clock used for the SOA serial; nil means time.Now.
	Now func() time.Time
	// Logger receives recursor failures and listener errors; nil discards.
	Logger *slog.Logger
}

// settings is a validated Config with its defaults filled in.
type settings struct {
	Config
	suffix       string // "." + domain, lower-case, for suffix matching
	nsTarget     string
	nsAddr       netip.Addr
	serviceTTL   uint32
	nodeTTL      uint32
	udpLimit     int
	recursors    []string
	recurseAvail bool
	miekgUDP     bool // tests: serve UDP with miekg's server even on a specific address
}

// validate fills defaults and rejects nonsense.
func (c Config) validate() (*settings, error) {
	s := &settings{Config: c}
	if s.Addr == "" {
		s.Addr = DefaultAddr
	}
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return nil, fmt.Errorf("resolver: addr %q: %w", s.Addr, err)
	}
	if s.Domain == "" {
		s.Domain = DefaultDomain
	}
	s.Domain = strings.ToLower(dns.Fqdn(s.Domain))
	if s.Domain == "." {
		return nil, errors.New("resolver: domain must not be the root")
	}
	if _, ok := dns.IsDomainName(s.Domain); !ok {
		return nil, fmt.Errorf("resolver: domain %q is not a domain name", s.Domain)
	}
	s.suffix = "." + s.Domain
	if s.Datacenter == "" {
		s.Datacenter = DefaultDatacenter
	}
	s.Datacenter = strings.ToLower(s.Datacenter)
	if strings.Contains(s.Datacenter, ".") {
		return nil, fmt.Errorf("resolver: datacenter %q must be a single label", s.Datacenter)
	}
	if s.NodeName != "" {
		s.nsTarget = strings.ToLower(s.NodeName) + ".node." + s.Datacenter + s.suffix
	} else {
		s.nsTarget = "ns" + s.suffix
	}
	if _, ok := dns.IsDomainName(s.nsTarget); !ok {
		return nil, fmt.Errorf("resolver: node name %q does not make a domain name", s.NodeName)
	}
	s.nsAddr = s.NSAddress
	if !s.nsAddr.IsValid() {
		if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
			s.nsAddr = a
		} else {
			s.nsAddr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
	}
	if s.NodeTTL < 0 || s.ServiceTTL < 0 {
		return nil, errors.New("resolver: negative TTL")
	}
	s.nodeTTL = uint32(s.NodeTTL / time.Second)
	s.serviceTTL = uint32(s.ServiceTTL / time.Second)
	if s.ARecordLimit < 0 || s.UDPAnswerLimit < 0 {
		return nil, errors.New("resolver: negative answer limit")
	}
	s.udpLimit = s.UDPAnswerLimit
	if s.udpLimit == 0 {
		s.udpLimit = DefaultUDPAnswerLimit
	}
	if s.udpLimit > maxUDPAnswerLimit {
		s.udpLimit = maxUDPAnswerLimit
	}
	for _, r := range s.Recursors {
		addr := r
		if _, _, err := net.SplitHostPort(r); err != nil {
			addr = net.JoinHostPort(r, "53")
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("resolver: recursor %q: %w", r, err)
		}
		s.recursors = append(s.recursors, addr)
	}
	s.recurseAvail = len(s.recursors) > 0
	if s.RecursorTimeout < 0 {
		return nil, errors.New("resolver: negative recursor timeout")
	}
	if s.RecursorTimeout == 0 {
		s.RecursorTimeout = DefaultRecursorTimeout
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return s, nil
}
