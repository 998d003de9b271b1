package peer

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Config is everything one agent needs. cmd/peerd builds it from flags and
// config files; tests build it directly. Each field says what its zero value
// means; validate fills defaults and rejects nonsense.
type Config struct {
	// NodeName is the node's name in membership, the catalog and DNS.
	// Zero: required.
	NodeName string

	// DataDir holds the replica store, the serf snapshot and the node's
	// state. Zero: required.
	DataDir string

	// BindAddr is the address gossip (TCP+UDP) and QUIC (UDP) listen on.
	// Zero: 127.0.0.1.
	BindAddr netip.Addr
	// AdvertiseAddr is the address other peers use to reach this one.
	// Zero: BindAddr.
	AdvertiseAddr netip.Addr
	// ClientAddr is where the HTTP API and the DNS stub listen.
	// Zero: 127.0.0.1.
	ClientAddr netip.Addr

	// SerfPort is the gossip port (TCP and UDP). Zero: 8301.
	SerfPort int
	// PeerPort is the QUIC port (UDP). Zero: 8300.
	PeerPort int
	// HTTPPort is the HTTP API port. Zero: 8500; -1 disables the API.
	HTTPPort int
	// DNSPort is the DNS port (UDP and TCP). Zero: 8600; -1 disables DNS.
	DNSPort int

	// Join lists seed addresses ("host" or "host:port") joined once at start;
	// failure to join any is an error.
	Join []string
	// RetryJoin lists seed addresses retried with backoff in the background
	// until one succeeds or the agent stops.
	RetryJoin []string

	// TrustRoots are the root public keys certificates must chain to. More
	// than one during a root rotation. Zero: required (Dev makes one).
	TrustRoots []ed25519.PublicKey
	// NodeKey is the node's private key. Zero: required (Dev makes one).
	NodeKey ed25519.PrivateKey
	// NodeChain is the node's encoded delegation chain from a trust root to
	// NodeKey's public key. Zero: required unless NodeKey is itself a root.
	NodeChain []byte

	// EncryptKey is the 32-byte gossip encryption key. Zero: gossip is not
	// encrypted (peer-to-peer QUIC always is).
	EncryptKey []byte

	// DevRootKey is the ephemeral root key of a -dev agent, used to sign
	// intentions written through the API without a signature. Zero: unsigned
	// intention writes are refused.
	DevRootKey ed25519.PrivateKey

	// Dev runs a single node with everything on 127.0.0.1; cmd/peerd
	// generates an ephemeral root and node key for it. It also makes the
	// default intention policy allow.
	Dev bool

	// DefaultIntentionPolicy decides data-plane connections no intention
	// matches: "allow" or "deny". Zero: "allow" with Dev, "deny" otherwise.
	DefaultIntentionPolicy string

	// Datacenter is reported to Consul clients. Zero: "dc1".
	Datacenter string
	// Domain is the DNS domain. Zero: "consul.".
	Domain string
	// Recursors answer DNS names outside Domain. Zero: REFUSED for those.
	Recursors []string

	// RejoinAfterLeave makes an agent that left gracefully rejoin the
	// members it knew when it starts again, as Consul's rejoin_after_leave
	// (-rejoin) does. False: after a leave it needs -join or -retry-join.
	RejoinAfterLeave bool

	// FastGossip uses memberlist's loopback timings (fast failure detection)
	// instead of LAN timings. Meant for tests and -dev.
	FastGossip bool

	// SyncInterval is how often local writes are batched and broadcast.
	// Zero: 20ms.
	SyncInterval time.Duration
	// AntiEntropyInterval is how often a digest is compared with a peer.
	// Zero: 1s.
	AntiEntropyInterval time.Duration

	// Logger receives the agent's logs. Zero: slog.Default().
	Logger *slog.Logger
}

func (c *Config) validate() error {
	if c.NodeName == "" {
		return errors.New("peer: node name is required")
	}
	if c.DataDir == "" {
		return errors.New("peer: data dir is required")
	}
	if !c.BindAddr.IsValid() {
		c.BindAddr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if c.BindAddr.IsUnspecified() && !c.AdvertiseAddr.IsValid() {
		return errors.New("peer: bind address is unspecified (0.0.0.0); set an advertise address")
	}
	if !c.AdvertiseAddr.IsValid() {
		c.AdvertiseAddr = c.BindAddr
	}
	if !c.ClientAddr.IsValid() {
		c.ClientAddr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	defPort := func(p *int, def int, name string) error {
		if *p == 0 {
			*p = def
		}
		if *p < -1 || *p > 65535 {
			return fmt.Errorf("peer: %s port %d out of range", name, *p)
		}
		return nil
	}
	for _, p := range []struct {
		v    *int
		def  int
		name string
	}{{&c.SerfPort, 8301, "serf"}, {&c.PeerPort, 8300, "peer"}, {&c.HTTPPort, 8500, "http"}, {&c.DNSPort, 8600, "dns"}} {
		if err := defPort(p.v, p.def, p.name); err != nil {
			return err
		}
	}
	if c.SerfPort == -1 || c.PeerPort == -1 {
		return errors.New("peer: the serf and peer ports cannot be disabled")
	}
	if len(c.TrustRoots) == 0 {
		return errors.New("peer: at least one trust root is required")
	}
	if len(c.NodeKey) != ed25519.PrivateKeySize {
		return errors.New("peer: a node key is required")
	}
	if len(c.EncryptKey) != 0 && len(c.EncryptKey) != 32 {
		return fmt.Errorf("peer: gossip encryption key must be 32 bytes, got %d", len(c.EncryptKey))
	}
	switch c.DefaultIntentionPolicy {
	case "":
		c.DefaultIntentionPolicy = intentionDeny
		if c.Dev {
			c.DefaultIntentionPolicy = intentionAllow
		}
	case intentionAllow, intentionDeny:
	default:
		return fmt.Errorf("peer: default intention policy %q: want allow or deny", c.DefaultIntentionPolicy)
	}
	if c.Datacenter == "" {
		c.Datacenter = "dc1"
	}
	if c.Domain == "" {
		c.Domain = "consul."
	}
	if c.SyncInterval == 0 {
		c.SyncInterval = 20 * time.Millisecond
	}
	if c.AntiEntropyInterval == 0 {
		c.AntiEntropyInterval = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}
