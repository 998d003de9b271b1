package main

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"

	"github.com/peerd/peerd/peer"
)

// agentFile is an agent configuration file, HCL or JSON, with Consul's key
// names where Consul has one. Pointer fields tell "unset" from zero so that
// later files and flags override only what they set.
type agentFile struct {
	NodeName      *string    `hcl:"node_name"`
	DataDir       *string    `hcl:"data_dir"`
	BindAddr      *string    `hcl:"bind_addr"`
	AdvertiseAddr *string    `hcl:"advertise_addr"`
	ClientAddr    *string    `hcl:"client_addr"`
	Datacenter    *string    `hcl:"datacenter"`
	Domain        *string    `hcl:"domain"`
	Recursors     []string   `hcl:"recursors"`
	StartJoin     []string   `hcl:"start_join"`
	RetryJoin     []string   `hcl:"retry_join"`
	Encrypt       *string    `hcl:"encrypt"`
	LogLevel      *string    `hcl:"log_level"`
	LogJSON       *bool      `hcl:"log_json"`
	Trust         []string   `hcl:"trust"`
	NodeKeyFile   *string    `hcl:"node_key_file"`
	NodeCertFile  *string    `hcl:"node_cert_file"`
	Ports         *filePorts `hcl:"ports"`

	// DefaultIntentionPolicy decides data-plane connections no intention
	// matches: "allow" or "deny" (peer.Config.DefaultIntentionPolicy).
	DefaultIntentionPolicy *string `hcl:"default_intention_policy"`

	EnableDebug             *bool    `hcl:"enable_debug"`
	RejoinAfterLeave        *bool    `hcl:"rejoin_after_leave"`
	EnableScriptChecks      *bool    `hcl:"enable_script_checks"`
	EnableLocalScriptChecks *bool    `hcl:"enable_local_script_checks"`
	HTTPToken               *string  `hcl:"http_token"`
	ACL                     *fileACL `hcl:"acl"`
}

// fileACL is the part of Consul's acl block peerd reads: the agent token,
// which (like http_token) every HTTP API request must then carry.
type fileACL struct {
	Enabled       *bool   `hcl:"enabled"`
	DefaultPolicy *string `hcl:"default_policy"`
	Tokens        *struct {
		Agent   *string `hcl:"agent"`
		Default *string `hcl:"default"`
	} `hcl:"tokens"`
}

type filePorts struct {
	SerfLAN *int `hcl:"serf_lan"`
	Peer    *int `hcl:"peer"`
	HTTP    *int `hcl:"http"`
	DNS     *int `hcl:"dns"`
}

// agentFileKeys is the schema checked before decoding, so that a typo gets
// "file:line: unknown key" instead of being silently ignored. A nil value
// is a leaf; a map is a nested block.
var agentFileKeys = map[string]map[string]bool{
	"node_name": nil, "data_dir": nil, "bind_addr": nil, "advertise_addr": nil,
	"client_addr": nil, "datacenter": nil, "domain": nil, "recursors": nil,
	"start_join": nil, "retry_join": nil, "encrypt": nil, "log_level": nil,
	"log_json": nil, "trust": nil, "node_key_file": nil, "node_cert_file": nil, "default_intention_policy": nil,
	"ports": {"serf_lan": true, "peer": true, "http": true, "dns": true},

	"enable_script_checks": nil, "enable_local_script_checks": nil, "http_token": nil, "enable_debug": nil,
	"rejoin_after_leave": nil,
	"acl":                {"enabled": true, "default_policy": true, "tokens": true},
	// Service and check definitions: checked by peer.ParseServiceFile.
	"service": opaqueBlock, "services": opaqueBlock, "check": opaqueBlock, "checks": opaqueBlock,
}

// opaqueBlock marks a key whose content another parser checks.
var opaqueBlock = map[string]bool{"\x00opaque": true}

// agentSettings is the merged result of files and flags, before keys and
// certificates are read.
type agentSettings struct {
	dev           bool
	nodeName      string
	dataDir       string
	bindAddr      string
	advertiseAddr string
	clientAddr    string
	datacenter    string
	domain        string
	recursors     []string
	join          []string
	retryJoin     []string
	encrypt       string
	logLevel      string
	logJSON       bool
	fastGossip    bool
	rejoin        bool // rejoin_after_leave
	trust         []string
	nodeKeyFile   string
	nodeCertFile  string
	// defaultIntentionPolicy is "allow", "deny" or "" (peer's default).
	defaultIntentionPolicy string
	serfPort               int
	peerPort               int
	httpPort               int
	dnsPort                int

	enableScriptChecks bool
	enableDebug        bool
	httpToken          string
	// configFiles are the files read, in order, for service definitions
	// (read again by reload).
	configFiles []string
}

// loadConfigPaths reads -config-file and -config-dir arguments in order; a
// directory contributes its *.json and *.hcl files in lexical order.
func loadConfigPaths(paths []string, into *agentSettings) error {
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		if !st.IsDir() {
			if err := loadConfigFile(p, into); err != nil {
				return err
			}
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		var files []string
		for _, e := range entries {
			ext := filepath.Ext(e.Name())
			if !e.IsDir() && (ext == ".json" || ext == ".hcl") {
				files = append(files, filepath.Join(p, e.Name()))
			}
		}
		sort.Strings(files)
		for _, f := range files {
			if err := loadConfigFile(f, into); err != nil {
				return err
			}
		}
	}
	return nil
}

// loadConfigFile parses one HCL or JSON file and applies what it sets.
func loadConfigFile(path string, into *agentSettings) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	f, err := parseAgentFile(path, b)
	if err != nil {
		return err
	}
	f.applyTo(into)
	into.configFiles = append(into.configFiles, path)
	return nil
}

// parseAgentFile checks every key against the schema and decodes the file.
// Errors name the file and, where the parser knows it, the line.
func parseAgentFile(path string, b []byte) (_ *agentFile, err error) {
	// The HCL v1 library panics on some malformed input (an escape cut
	// short at the end of a JSON string, `{"\0`, found by FuzzAgentConfig;
	// token.Value on "0eA"): such a panic is an error naming the file.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("config: %s: malformed HCL or JSON: %v", path, r)
		}
	}()
	root, err := hcl.ParseBytes(b)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %v", path, err)
	}
	list, ok := root.Node.(*ast.ObjectList)
	if !ok {
		return nil, fmt.Errorf("config: %s: top level must be an object", path)
	}
	if err := checkKeys(path, b, list, agentFileKeys); err != nil {
		return nil, err
	}
	var f agentFile
	if err := hcl.DecodeObject(&f, root); err != nil {
		return nil, fmt.Errorf("config: %s: %v", path, err)
	}
	return &f, nil
}

// itemLine is the line of a config item. HCL's parser records it; its
// JSON parser does not, so for JSON the first `"key":` in src gives it.
func itemLine(src []byte, item *ast.ObjectItem, key string) int {
	if l := item.Pos().Line; l > 0 {
		return l
	}
	if m := regexp.MustCompile(`"` + regexp.QuoteMeta(key) + `"\s*:`).FindIndex(src); m != nil {
		return 1 + bytes.Count(src[:m[0]], []byte("\n"))
	}
	return 0
}

func checkKeys(path string, src []byte, list *ast.ObjectList, schema map[string]map[string]bool) error {
	for _, item := range list.Items {
		if len(item.Keys) == 0 {
			continue
		}
		key := item.Keys[0].Token.Value()
		name, _ := key.(string)
		sub, known := schema[name]
		if !known {
			return fmt.Errorf("config: %s:%d: unknown key %q", path, itemLine(src, item, name), name)
		}
		if sub == nil || sub["\x00opaque"] {
			continue
		}
		obj, ok := item.Val.(*ast.ObjectType)
		if !ok {
			return fmt.Errorf("config: %s:%d: key %q must be a block", path, itemLine(src, item, name), name)
		}
		for _, in := range obj.List.Items {
			if len(in.Keys) == 0 {
				continue
			}
			k, _ := in.Keys[0].Token.Value().(string)
			if !sub[k] {
				return fmt.Errorf("config: %s:%d: unknown key %q in %s", path, itemLine(src, in, k), k, name)
			}
		}
	}
	return nil
}

func (f *agentFile) applyTo(s *agentSettings) {
	setS := func(dst *string, v *string) {
		if v != nil {
			*dst = *v
		}
	}
	setI := func(dst *int, v *int) {
		if v != nil {
			*dst = *v
		}
	}
	setS(&s.nodeName, f.NodeName)
	setS(&s.dataDir, f.DataDir)
	setS(&s.bindAddr, f.BindAddr)
	setS(&s.advertiseAddr, f.AdvertiseAddr)
	setS(&s.clientAddr, f.ClientAddr)
	setS(&s.datacenter, f.Datacenter)
	setS(&s.domain, f.Domain)
	setS(&s.encrypt, f.Encrypt)
	setS(&s.logLevel, f.LogLevel)
	setS(&s.nodeKeyFile, f.NodeKeyFile)
	setS(&s.nodeCertFile, f.NodeCertFile)
	setS(&s.defaultIntentionPolicy, f.DefaultIntentionPolicy)
	if f.LogJSON != nil {
		s.logJSON = *f.LogJSON
	}
	s.recursors = append(s.recursors, f.Recursors...)
	s.join = append(s.join, f.StartJoin...)
	s.retryJoin = append(s.retryJoin, f.RetryJoin...)
	s.trust = append(s.trust, f.Trust...)
	if f.EnableDebug != nil {
		s.enableDebug = *f.EnableDebug
	}
	if f.RejoinAfterLeave != nil {
		s.rejoin = *f.RejoinAfterLeave
	}
	if f.EnableScriptChecks != nil {
		s.enableScriptChecks = *f.EnableScriptChecks
	}
	if f.EnableLocalScriptChecks != nil && *f.EnableLocalScriptChecks {
		// Only local registrations exist in peerd: the same thing.
		s.enableScriptChecks = true
	}
	setS(&s.httpToken, f.HTTPToken)
	if f.ACL != nil && f.ACL.Tokens != nil {
		setS(&s.httpToken, f.ACL.Tokens.Agent)
	}
	if f.Ports != nil {
		setI(&s.serfPort, f.Ports.SerfLAN)
		setI(&s.peerPort, f.Ports.Peer)
		setI(&s.httpPort, f.Ports.HTTP)
		setI(&s.dnsPort, f.Ports.DNS)
	}
}

// parseAddr parses an IP address setting; empty means unset.
func parseAddr(key, v string) (netip.Addr, error) {
	if v == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("config: %s: %q is not an IP address", key, v)
	}
	return a, nil
}

// parseEncryptKey decodes a gossip key as Consul writes it: base64 of 32 bytes.
func parseEncryptKey(v string) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return nil, fmt.Errorf("config: encrypt: not base64: %v", err)
	}
	if len(k) != 32 {
		return nil, fmt.Errorf("config: encrypt: key must be 32 bytes (got %d); create one with: head -c32 /dev/urandom | base64", len(k))
	}
	return k, nil
}

// loadServiceDefs reads the service and check definitions of the config
// files. A bad file is an error naming the file and line.
func loadServiceDefs(files []string, allowScripts bool) ([]peer.ServiceDefinition, []peer.CheckDefinition, error) {
	var svcs []peer.ServiceDefinition
	var checks []peer.CheckDefinition
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, fmt.Errorf("config: %w", err)
		}
		f, err := peer.ParseServiceFile(path, b, allowScripts)
		if err != nil {
			return nil, nil, err
		}
		svcs = append(svcs, f.Services...)
		checks = append(checks, f.Checks...)
	}
	return svcs, checks, nil
}
