package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/peerd/peerd/identity"
	"github.com/peerd/peerd/peer"
)

func agentCommands() []command {
	return []command{{name: "agent", synopsis: "run a peerd agent (-dev for a single throwaway node)", run: runAgent}}
}

const agentSynopsis = `agent [-dev] [-config-file FILE] [-config-dir DIR] [-node NAME] [-data-dir DIR]
      [-bind IP] [-advertise IP] [-client IP] [-join ADDR]... [-retry-join ADDR]...
      [-trust ROOT.pub]... [-node-key FILE] [-node-cert FILE] [-encrypt KEY]`

func runAgent(ctx context.Context, c *cli, args []string) error {
	fl, err := parseAgentFlags(c, args)
	if err != nil {
		return err
	}
	s := &agentSettings{dev: fl.dev}
	if err := loadConfigPaths(fl.configPaths, s); err != nil {
		return err
	}
	fl.applyTo(s) // flags win over files
	logger, err := newLogger(c.stderr, s.logLevel, s.logJSON)
	if err != nil {
		return err
	}
	cfg, cleanup, err := buildPeerConfig(s, logger)
	if cleanup != nil {
		defer cleanup()
	}
	if err != nil {
		return err
	}
	svcs, checks, err := loadServiceDefs(s.configFiles, s.enableScriptChecks)
	if err != nil {
		return err
	}
	a, err := peer.New(cfg)
	if err != nil {
		return err
	}
	a.SetLocalOptions(peer.LocalOptions{EnableScriptChecks: s.enableScriptChecks, HTTPToken: s.httpToken, EnableDebug: s.enableDebug || s.dev})
	reload := func() error {
		// Service and check definitions and the node certificate file (a
		// renewed certificate for the same key) are re-read; other
		// settings need a restart.
		re := &agentSettings{}
		if err := loadConfigPaths(fl.configPaths, re); err != nil {
			return err
		}
		svcs, checks, err := loadServiceDefs(re.configFiles, s.enableScriptChecks)
		if err != nil {
			return err
		}
		if s.nodeCertFile != "" {
			chain, err := identity.ReadChainFile(s.nodeCertFile)
			if err != nil {
				return fmt.Errorf("reload: node_cert_file: %w", err)
			}
			b, err := chain.Marshal()
			if err != nil {
				return fmt.Errorf("reload: node_cert_file: %w", err)
			}
			if err := a.SetNodeChain(ctx, b); err != nil {
				return fmt.Errorf("reload: %w", err)
			}
		}
		return a.ReloadServices(svcs, checks)
	}
	a.SetReloadFunc(reload)
	if err := a.Start(ctx); err != nil {
		a.Close()
		return err
	}
	if err := a.ReloadServices(svcs, checks); err != nil {
		a.Close()
		return err
	}
	logger.Info("agent started", "node", cfg.NodeName, "id", a.ID(), "http", addrOrOff(a.HTTPAddr()),
		"dns", addrOrOff(a.DNSAddr()), "serf", a.SerfAddr().String(), "peer", a.PeerAddr().String(), "dev", cfg.Dev)
	if cfg.Dev {
		fmt.Fprintf(c.stdout, "==> peerd dev agent running: HTTP http://%s  DNS %s  (Ctrl-C to stop)\n", a.HTTPAddr(), a.DNSAddr())
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-hup:
			if err := reload(); err != nil {
				logger.Error("reload failed; the running services are unchanged", "err", err)
			} else {
				logger.Info("reloaded service and check definitions")
			}
			continue
		case <-a.Done():
			// The agent left through the API (peerd leave).
			return a.Close()
		case <-ctx.Done():
		}
		break
	}
	logger.Info("signal received; leaving the mesh gracefully")
	if err := a.Leave(10 * time.Second); err != nil {
		logger.Warn("graceful leave failed", "err", err)
	}
	return a.Close()
}

// agentFlags is what was given on the command line; set names the flags
// the user gave, so that only those override config files.
type agentFlags struct {
	dev         bool
	configPaths []string
	v           agentSettings
	set         map[string]bool
}

func parseAgentFlags(c *cli, args []string) (*agentFlags, error) {
	fs := newFlagSet(c, "agent", agentSynopsis)
	fl := &agentFlags{set: map[string]bool{}}
	f := &fl.v
	var configFiles, configDirs, join, retryJoin, trust, recursors stringList
	fs.BoolVar(&fl.dev, "dev", false, "single throwaway node: ephemeral root and node key, temp data dir, 127.0.0.1")
	fs.Var(&configFiles, "config-file", "HCL or JSON config file (repeatable)")
	fs.Var(&configDirs, "config-dir", "directory of *.hcl and *.json config files (repeatable)")
	fs.StringVar(&f.nodeName, "node", "", "node name (default: hostname)")
	fs.StringVar(&f.dataDir, "data-dir", "", "directory for the replica store and serf snapshot")
	fs.StringVar(&f.bindAddr, "bind", "", "address for gossip and QUIC (default 127.0.0.1)")
	fs.StringVar(&f.advertiseAddr, "advertise", "", "address other peers use to reach this one (default: -bind)")
	fs.StringVar(&f.clientAddr, "client", "", "address for HTTP and DNS (default 127.0.0.1)")
	fs.IntVar(&f.serfPort, "serf-port", 0, "gossip port, TCP and UDP (default 8301)")
	fs.IntVar(&f.peerPort, "peer-port", 0, "QUIC port, UDP (default 8300)")
	fs.IntVar(&f.httpPort, "http-port", 0, "HTTP API port (default 8500, -1 disables)")
	fs.IntVar(&f.dnsPort, "dns-port", 0, "DNS port (default 8600, -1 disables)")
	fs.Var(&join, "join", "seed address to join at start (repeatable)")
	fs.Var(&retryJoin, "retry-join", "seed address to join, retried with backoff (repeatable)")
	fs.Var(&trust, "trust", "trusted root public key file (repeatable for rotation)")
	fs.Var(&recursors, "recursor", "DNS recursor for names outside the domain (repeatable)")
	fs.StringVar(&f.nodeKeyFile, "node-key", "", "node private key file")
	fs.StringVar(&f.nodeCertFile, "node-cert", "", "node certificate chain file")
	fs.StringVar(&f.encrypt, "encrypt", "", "gossip encryption key, base64 of 32 bytes")
	fs.StringVar(&f.datacenter, "datacenter", "", "datacenter name reported to Consul clients (default dc1)")
	fs.StringVar(&f.domain, "domain", "", "DNS domain (default consul.)")
	fs.StringVar(&f.logLevel, "log-level", "", "trace, debug, info, warn or error (default info)")
	fs.BoolVar(&f.logJSON, "log-json", false, "log JSON lines")
	fs.StringVar(&f.defaultIntentionPolicy, "default-intention-policy", "", "allow or deny data-plane connections no intention matches (default: allow with -dev, deny otherwise)")
	fs.BoolVar(&f.enableDebug, "enable-debug", false, "serve Go's profiler under /debug/pprof/ on the HTTP API (always on with -dev)")
	fs.BoolVar(&f.rejoin, "rejoin", false, "after a graceful leave, rejoin the members known before it at the next start (Consul's rejoin_after_leave)")
	fs.BoolVar(&f.fastGossip, "fast-gossip", false, "loopback gossip timings: fast failure detection, for tests and demos")
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usageErrorf("agent: unexpected argument %q", fs.Arg(0))
	}
	fs.Visit(func(x *flag.Flag) { fl.set[x.Name] = true })
	f.join, f.retryJoin, f.trust, f.recursors = join, retryJoin, trust, recursors
	fl.configPaths = append(append([]string{}, configFiles...), configDirs...)
	return fl, nil
}

// applyTo overrides s with every flag the user gave; repeatable flags add
// to the lists the config files set.
func (fl *agentFlags) applyTo(s *agentSettings) {
	f := &fl.v
	str := func(name string, dst *string, v string) {
		if fl.set[name] {
			*dst = v
		}
	}
	num := func(name string, dst *int, v int) {
		if fl.set[name] {
			*dst = v
		}
	}
	str("node", &s.nodeName, f.nodeName)
	str("data-dir", &s.dataDir, f.dataDir)
	str("bind", &s.bindAddr, f.bindAddr)
	str("advertise", &s.advertiseAddr, f.advertiseAddr)
	str("client", &s.clientAddr, f.clientAddr)
	str("node-key", &s.nodeKeyFile, f.nodeKeyFile)
	str("node-cert", &s.nodeCertFile, f.nodeCertFile)
	str("encrypt", &s.encrypt, f.encrypt)
	str("datacenter", &s.datacenter, f.datacenter)
	str("domain", &s.domain, f.domain)
	str("log-level", &s.logLevel, f.logLevel)
	str("default-intention-policy", &s.defaultIntentionPolicy, f.defaultIntentionPolicy)
	num("serf-port", &s.serfPort, f.serfPort)
	num("peer-port", &s.peerPort, f.peerPort)
	num("http-port", &s.httpPort, f.httpPort)
	num("dns-port", &s.dnsPort, f.dnsPort)
	if fl.set["log-json"] {
		s.logJSON = f.logJSON
	}
	if fl.set["enable-debug"] {
		s.enableDebug = f.enableDebug
	}
	if fl.set["fast-gossip"] {
		s.fastGossip = f.fastGossip
	}
	if fl.set["rejoin"] {
		s.rejoin = f.rejoin
	}
	s.join = appendNew(s.join, f.join)
	s.retryJoin = appendNew(s.retryJoin, f.retryJoin)
	s.trust = appendNew(s.trust, f.trust)
	s.recursors = appendNew(s.recursors, f.recursors)
}

// appendNew appends the values of add that dst does not hold yet, so that
// parsing the flags twice does not duplicate them.
func appendNew(dst []string, add []string) []string {
	for _, v := range add {
		dup := false
		for _, d := range dst {
			if d == v {
				dup = true
				break
			}
		}
		if !dup {
			dst = append(dst, v)
		}
	}
	return dst
}

// buildPeerConfig reads keys and certificates and turns settings into a
// peer.Config. In dev mode it makes an ephemeral root, node key, chain and
// data directory; cleanup removes the directory.
func buildPeerConfig(s *agentSettings, logger *slog.Logger) (peer.Config, func(), error) {
	var cfg peer.Config
	var cleanup func()
	var err error
	if cfg.BindAddr, err = parseAddr("bind_addr", s.bindAddr); err != nil {
		return cfg, nil, err
	}
	if cfg.AdvertiseAddr, err = parseAddr("advertise_addr", s.advertiseAddr); err != nil {
		return cfg, nil, err
	}
	if cfg.ClientAddr, err = parseAddr("client_addr", s.clientAddr); err != nil {
		return cfg, nil, err
	}
	if cfg.EncryptKey, err = parseEncryptKey(s.encrypt); err != nil {
		return cfg, nil, err
	}
	cfg.NodeName = s.nodeName
	if cfg.NodeName == "" {
		host, err := os.Hostname()
		if err != nil {
			return cfg, nil, fmt.Errorf("config: node_name not set and hostname unknown: %w", err)
		}
		cfg.NodeName = host
	}
	cfg.DataDir = s.dataDir
	cfg.SerfPort, cfg.PeerPort, cfg.HTTPPort, cfg.DNSPort = s.serfPort, s.peerPort, s.httpPort, s.dnsPort
	cfg.Join, cfg.RetryJoin = s.join, s.retryJoin
	cfg.Datacenter, cfg.Domain, cfg.Recursors = s.datacenter, s.domain, s.recursors
	cfg.Logger = logger
	cfg.Dev = s.dev
	cfg.FastGossip = s.fastGossip
	cfg.RejoinAfterLeave = s.rejoin
	cfg.DefaultIntentionPolicy = s.defaultIntentionPolicy

	if s.dev {
		if cfg.DataDir == "" {
			dir, err := os.MkdirTemp("", "peerd-dev-")
			if err != nil {
				return cfg, nil, fmt.Errorf("dev: %w", err)
			}
			cfg.DataDir = dir
			cleanup = func() { os.RemoveAll(dir) }
		}
		if err := devIdentity(&cfg); err != nil {
			return cfg, cleanup, err
		}
		cfg.FastGossip = true
		return cfg, cleanup, nil
	}

	if cfg.DataDir == "" {
		return cfg, nil, errors.New("config: data_dir (-data-dir) is required outside -dev")
	}
	if len(s.trust) == 0 {
		return cfg, nil, errors.New("config: trust (-trust ROOT.pub) is required outside -dev")
	}
	for _, p := range s.trust {
		pub, err := identity.ReadPublicKeyFile(p)
		if err != nil {
			return cfg, nil, fmt.Errorf("config: trust: %w", err)
		}
		cfg.TrustRoots = append(cfg.TrustRoots, pub)
	}
	if s.nodeKeyFile == "" {
		return cfg, nil, errors.New("config: node_key_file (-node-key) is required outside -dev")
	}
	if cfg.NodeKey, err = identity.ReadPrivateKeyFile(s.nodeKeyFile); err != nil {
		return cfg, nil, fmt.Errorf("config: node_key_file: %w", err)
	}
	if s.nodeCertFile != "" {
		chain, err := identity.ReadChainFile(s.nodeCertFile)
		if err != nil {
			return cfg, nil, fmt.Errorf("config: node_cert_file: %w", err)
		}
		if cfg.NodeChain, err = chain.Marshal(); err != nil {
			return cfg, nil, fmt.Errorf("config: node_cert_file: %w", err)
		}
	} else if !isRoot(cfg.NodeKey, cfg.TrustRoots) {
		return cfg, nil, errors.New("config: node_cert_file (-node-cert) is required unless the node key is a trust root")
	}
	return cfg, nil, nil
}

func isRoot(key ed25519.PrivateKey, roots []ed25519.PublicKey) bool {
	pub := key.Public().(ed25519.PublicKey)
	for _, r := range roots {
		if r.Equal(pub) {
			return true
		}
	}
	return false
}

// devIdentity makes an ephemeral root and a node certificate with every
// capability, so a dev agent can publish any service, write any key and
// sign intentions.
func devIdentity(cfg *peer.Config) error {
	root, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	node, err := identity.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	now := time.Now()
	chain, err := identity.Issue(root, nil, node.Public().(ed25519.PublicKey), cfg.NodeName,
		identity.Constraints{Services: []string{"*"}, KVPrefixes: []string{"*"}, SignIntentions: true},
		now.Add(-time.Minute), now.Add(10*365*24*time.Hour), 1)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	b, err := chain.Marshal()
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	cfg.TrustRoots = []ed25519.PublicKey{root.Public().(ed25519.PublicKey)}
	cfg.NodeKey = node
	cfg.NodeChain = b
	cfg.DevRootKey = root
	return nil
}

// addrOrOff is a listening address for the logs, "off" when the listener
// is disabled (-http-port/-dns-port -1).
func addrOrOff(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return "off"
	}
	return ap.String()
}
