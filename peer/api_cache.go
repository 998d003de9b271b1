package peer

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"hash/maphash"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/peerd/peerd/gossip"
)

// Hot read endpoints (health and catalog of one service) are answered from
// a cache of encoded bodies. An entry is valid while the replica scope's
// index and the membership epoch it was built at are unchanged, so a hit
// is the answer a fresh build would give (membership changes reach it with
// the next serf event, as they reach blocking queries). Busy clients (load
// balancers polling /v1/health/service/web) then cost a map lookup and a
// write, not a JSON encoding of every instance.

// respCacheMax and respCacheMaxBytes bound the cache; past either it is
// emptied (queries vary little in practice).
const (
	respCacheMax      = 1024
	respCacheMaxBytes = 32 << 20
)

type cachedResp struct {
	index   uint64
	members uint64 // membership epoch when built
	body    []byte

	gzOnce sync.Once
	gz     []byte // body gzipped, made on the first request that accepts it
}

// gzipMin is the body size from which answers are compressed for clients
// that accept gzip (Go's HTTP client, hence Consul's api package, does).
const gzipMin = 1400

func (e *cachedResp) gzipped() []byte {
	e.gzOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		zw.Write(e.body)
		if zw.Close() == nil {
			e.gz = buf.Bytes()
		}
	})
	return e.gz
}

type respCache struct {
	mu    sync.Mutex
	m     map[string]*cachedResp // guarded by mu
	bytes int                    // body bytes held; guarded by mu
}

var cacheSeed = maphash.MakeSeed()

// membershipDigest summarizes the statuses of all members (what serfHealth
// and the left/failed filtering read).
func (a *Agent) membershipDigest() (uint64, map[string]gossip.MemberStatus) {
	st := map[string]gossip.MemberStatus{}
	if a.members == nil {
		return 0, st
	}
	ms := a.members.Members()
	names := make([]string, 0, len(ms))
	for _, m := range ms {
		st[m.Name] = m.Status
		names = append(names, m.Name)
	}
	sort.Strings(names)
	var h maphash.Hash
	h.SetSeed(cacheSeed)
	for _, n := range names {
		h.WriteString(n)
		h.WriteByte(byte(st[n]))
	}
	return h.Sum64(), st
}

// cacheKey is the request's path and query without the blocking
// parameters.
func cacheKey(r *http.Request) string {
	q := r.URL.Query()
	q.Del("index")
	q.Del("wait")
	q.Del("token")
	q.Del("stale")
	q.Del("consistent")
	q.Del("cached")
	return r.URL.EscapedPath() + "?" + q.Encode()
}

// serveCached answers from the cache or builds, encodes and caches the
// body. build runs with the membership statuses of this request.
func (s *apiServer) serveCached(w http.ResponseWriter, r *http.Request, idx uint64, build func(statuses map[string]gossip.MemberStatus) (any, error)) error {
	// The membership epoch (api_block.go), not a digest of the member list
	// per request: a hit costs O(1) however large the mesh. Read before
	// the statuses, so an entry is never labelled newer than its content.
	epoch, _ := s.a.local.members.current()
	if r.URL.Query().Has("near") {
		// Distances drift without any index changing: never cached.
		v, err := build(s.a.memberStatusMap())
		if err != nil {
			return err
		}
		return writeJSON(w, v)
	}
	key := cacheKey(r)
	c := &s.cache
	c.mu.Lock()
	e := c.m[key]
	c.mu.Unlock()
	if e == nil || e.index != idx || e.members != epoch {
		v, err := build(s.a.memberStatusMap())
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := json.NewEncoder(&buf).Encode(v); err != nil {
			return err
		}
		e = &cachedResp{index: idx, members: epoch, body: buf.Bytes()}
		c.mu.Lock()
		if c.m == nil || len(c.m) >= respCacheMax || c.bytes+len(e.body) > respCacheMaxBytes {
			c.m, c.bytes = map[string]*cachedResp{}, 0
		}
		if old := c.m[key]; old != nil {
			c.bytes -= len(old.body)
		}
		c.m[key] = e
		c.bytes += len(e.body)
		c.mu.Unlock()
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	body := e.body
	if len(body) >= gzipMin && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
		if gz := e.gzipped(); gz != nil {
			body = gz
			h.Set("Content-Encoding", "gzip")
			h.Set("Vary", "Accept-Encoding")
		}
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	_, err := w.Write(body)
	return err
}

// statusFrom is nodeStatus over a snapshot of member statuses.
func (a *Agent) statusFrom(st map[string]gossip.MemberStatus, name string) (gossip.MemberStatus, bool) {
	if name == a.cfg.NodeName {
		return gossip.StatusAlive, true
	}
	s, ok := st[name]
	return s, ok
}

// visibleFrom is nodeVisible over a snapshot of member statuses.
func (a *Agent) visibleFrom(st map[string]gossip.MemberStatus, name string) bool {
	if name == "" {
		return false // its node record has not arrived: Consul never lists a service without its node
	}
	s, ok := a.statusFrom(st, name)
	return !ok || s != gossip.StatusLeft
}

// serfCheckFrom is serfCheck over a snapshot of member statuses.
func (a *Agent) serfCheckFrom(st map[string]gossip.MemberStatus, node string, idx uint64) apiHealthCheck {
	c := apiHealthCheck{Node: node, CheckID: serfHealthID, Name: "Serf Health Status",
		CreateIndex: idx, ModifyIndex: idx, ServiceTags: []string{}}
	if s, _ := a.statusFrom(st, node); s == gossip.StatusAlive {
		c.Status, c.Output = "passing", "Agent alive and reachable"
	} else {
		c.Status, c.Output = "critical", "Agent not live or unreachable"
	}
	return c
}
