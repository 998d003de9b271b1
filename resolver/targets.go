package resolver

import (
	"net/netip"
	"sync"

	"github.com/miekg/dns"
)

// maxCachedTargets bounds the SRV target name cache; past it names are
// built per query.
const maxCachedTargets = 16384

// targetNames builds and caches SRV target names (NODE.node.DC.<domain>,
// HEXIP.addr.DC.<domain>), so that the hot path does not concatenate and
// validate the same strings on every query.
type targetNames struct {
	suffixNode string // ".node.DC.<domain>"
	suffixAddr string // ".addr.DC.<domain>"

	mu    sync.RWMutex          // guards nodes and addrs
	nodes map[string]string     // node name → target, "" for an invalid name
	addrs map[netip.Addr]string // address → target
}

func newTargetNames(cfg *settings) *targetNames {
	return &targetNames{
		suffixNode: ".node." + cfg.Datacenter + cfg.suffix,
		suffixAddr: ".addr." + cfg.Datacenter + cfg.suffix,
		nodes:      make(map[string]string),
		addrs:      make(map[netip.Addr]string),
	}
}

// node returns NODE.node.DC.<domain> and whether it is a valid domain name.
func (t *targetNames) node(name string) (string, bool) {
	t.mu.RLock()
	s, ok := t.nodes[name]
	t.mu.RUnlock()
	if !ok {
		s = name + t.suffixNode
		if _, valid := dns.IsDomainName(s); !valid || name == "" || name[0] == '.' {
			s = ""
		}
		t.mu.Lock()
		if len(t.nodes)+len(t.addrs) < maxCachedTargets {
			t.nodes[name] = s
		}
		t.mu.Unlock()
	}
	return s, s != ""
}

// addr returns HEXIP.addr.DC.<domain>.
func (t *targetNames) addr(a netip.Addr) string {
	t.mu.RLock()
	s, ok := t.addrs[a]
	t.mu.RUnlock()
	if !ok {
		s = hexAddr(a) + t.suffixAddr
		t.mu.Lock()
		if len(t.nodes)+len(t.addrs) < maxCachedTargets {
			t.addrs[a] = s
		}
		t.mu.Unlock()
	}
	return s
}
