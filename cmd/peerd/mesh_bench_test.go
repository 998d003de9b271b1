package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMeshFigures measures the agent issue's figures on real processes:
// write propagation p50/p99, payload transmissions per node per update,
// idle bytes per node per second, and RSS idle and with 10,000 keys.
// It prints figures instead of asserting them; `make bench` runs it with
// PEERD_BENCH=1 and docs/BENCHMARKS.md records the output.
func TestMeshFigures(t *testing.T) {
	if os.Getenv("PEERD_BENCH") == "" {
		t.Skip("set PEERD_BENCH=1 (make bench) to measure mesh figures")
	}
	sizes := []int{5, 20}
	if v := os.Getenv("PEERD_BENCH_SIZES"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, _ := strconv.Atoi(f)
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		t.Run(fmt.Sprintf("n=%d", n), func(t *testing.T) { meshFigures(t, n) })
	}
}

func meshFigures(t *testing.T, n int) {
	m := newMesh(t)
	var all []*agentProc
	for i := 1; i <= n; i++ {
		o := agentOpts{lanGossip: true, extra: []string{"-log-level", "warn"}}
		if i > 1 {
			o.join = []string{"n1"}
		}
		all = append(all, m.start(fmt.Sprintf("n%d", i), o))
	}
	for _, p := range all {
		waitFor(t, 60*time.Second, func() error {
			ms, err := p.members()
			if err != nil {
				return err
			}
			alive := 0
			for _, mb := range ms {
				if mb.Status == memberAlive {
					alive++
				}
			}
			if alive != n {
				return fmt.Errorf("%s sees %d alive of %d", p.name, alive, n)
			}
			return nil
		})
	}
	// Let the admission and the first anti-entropy rounds settle.
	time.Sleep(3 * time.Second)

	// Idle traffic over a quiet window, counted by the kernel when nftables
	// is available (all of serf and QUIC), else from the transport's own
	// counters (QUIC payload only).
	idle := 10 * time.Second
	counter := newByteCounter(t, all)
	before := counter.read()
	time.Sleep(idle)
	after := counter.read()
	var idleBytes []float64
	for i := range all {
		idleBytes = append(idleBytes, float64(after[i]-before[i])/idle.Seconds())
	}
	t.Logf("n=%d idle bytes sent per node per second (%s): p50 %.0f, max %.0f", n, counter.source, percentile(idleBytes, 50), percentile(idleBytes, 100))
	t.Logf("n=%d RSS idle per agent: p50 %.1f MB, max %.1f MB", n, percentile(rssMB(all), 50), percentile(rssMB(all), 100))

	// Propagation: one write at a time on a rotating node; blocking reads on
	// every other node report when they see it. Two rounds: the first
	// writes after start (Plumtree's tree still forming: every new source
	// prunes and grafts links), then the same number again (steady state).
	const writes = 40
	round := func(name string, first int) {
		payloadsBefore := sumPlumtree(t, all, "payloads_sent")
		graftsBefore := sumPlumtree(t, all, "grafts_sent")
		givenUpBefore := sumPlumtree(t, all, "missing_given_up")
		var lat []float64
		for w := first; w < first+writes; w++ {
			src := all[w%n]
			key := fmt.Sprintf("bench/prop/%d", w)
			var mu sync.Mutex
			var wg sync.WaitGroup
			start := time.Now()
			for _, p := range all {
				if p == src {
					continue
				}
				wg.Add(1)
				go func(p *agentProc) {
					defer wg.Done()
					if d, ok := waitKey(p, key, start); ok {
						mu.Lock()
						lat = append(lat, float64(d.Microseconds())/1000)
						mu.Unlock()
					}
				}(p)
			}
			src.kvPut(key, "v")
			wg.Wait()
		}
		time.Sleep(2 * time.Second)
		payloads := sumPlumtree(t, all, "payloads_sent") - payloadsBefore
		t.Logf("n=%d %s: propagation of a KV write to the other %d agents (%d writes): p50 %.1f ms, p99 %.1f ms, max %.1f ms",
			n, name, n-1, writes, percentile(lat, 50), percentile(lat, 99), percentile(lat, 100))
		t.Logf("n=%d %s: plumtree repairs during the writes: %d grafts, %d missing messages given up to anti-entropy",
			n, name, sumPlumtree(t, all, "grafts_sent")-graftsBefore, sumPlumtree(t, all, "missing_given_up")-givenUpBefore)
		t.Logf("n=%d %s: payload transmissions per node per update: %.2f (%d payloads, %d updates, %d nodes)",
			n, name, float64(payloads)/float64(writes*n), payloads, writes, n)
	}
	round("first writes", 0)
	round("next writes", writes)
	for _, p := range all {
		b, _ := p.get("/v1/agent/peerd/info")
		var st map[string]map[string]string
		json.Unmarshal(b, &st)
		if r := st["replica"]["rejected_entries"]; r != "0" {
			t.Logf("n=%d %s rejected %s entries: %s", n, p.name, r, st["replica"]["rejected_reasons"])
		}
	}

	// 10,000 keys written on one node, then RSS everywhere.
	const keys = 10000
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for k := 0; k < keys; k++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(k int) {
			defer wg.Done()
			defer func() { <-sem }()
			all[0].put(fmt.Sprintf("/v1/kv/bench/keys/%05d", k), strings.Repeat("x", 64))
		}(k)
	}
	wg.Wait()
	for _, p := range all {
		waitFor(t, 120*time.Second, func() error {
			b, err := p.get("/v1/kv/bench/keys/?keys")
			if err != nil {
				return err
			}
			var ks []string
			json.Unmarshal(b, &ks)
			if len(ks) != keys {
				return fmt.Errorf("%s has %d keys", p.name, len(ks))
			}
			return nil
		})
	}
	t.Logf("n=%d RSS with %d KV keys (64-byte values) per agent: p50 %.1f MB, max %.1f MB", n, keys, percentile(rssMB(all), 50), percentile(rssMB(all), 100))
}

// waitKey polls key on p with blocking queries until it exists, and returns
// how long after start it appeared.
func waitKey(p *agentProc, key string, start time.Time) (time.Duration, bool) {
	deadline := start.Add(30 * time.Second)
	index := "0"
	for time.Now().Before(deadline) {
		resp, err := httpClient.Get(p.httpURL("/v1/kv/" + key + "?wait=5s&index=" + index))
		if err != nil {
			return 0, false
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return time.Since(start), true
		}
		index = resp.Header.Get("X-Consul-Index")
	}
	return 0, false
}

func sumPlumtree(t *testing.T, all []*agentProc, field string) uint64 {
	var total uint64
	for _, p := range all {
		b, err := p.get("/v1/agent/peerd/info")
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]map[string]string
		json.Unmarshal(b, &st)
		v, ok := st["dissemination"]["plumtree_"+field]
		if !ok {
			t.Fatalf("no plumtree_%s in %v", field, st["dissemination"])
		}
		x, _ := strconv.ParseUint(v, 10, 64)
		total += x
	}
	return total
}

func rssMB(all []*agentProc) []float64 {
	var out []float64
	for _, p := range all {
		p.mu.Lock()
		pid := p.cmd.Process.Pid
		p.mu.Unlock()
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmRSS:") {
				f := strings.Fields(line)
				kb, _ := strconv.ParseFloat(f[1], 64)
				out = append(out, kb/1024)
			}
		}
	}
	return out
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// byteCounter counts bytes each agent sends: with nftables, a counter rule
// per source address on the output hook (every serf and QUIC packet); else
// the transport's payload counters.
type byteCounter struct {
	t      *testing.T
	all    []*agentProc
	source string
	table  string
}

func newByteCounter(t *testing.T, all []*agentProc) *byteCounter {
	c := &byteCounter{t: t, all: all, source: "transport payload counters (QUIC only)"}
	if _, err := exec.LookPath("nft"); err != nil || os.Geteuid() != 0 {
		return c
	}
	c.table = fmt.Sprintf("peerdbench%d", os.Getpid())
	rules := []string{fmt.Sprintf("add table inet %s", c.table),
		fmt.Sprintf("add chain inet %s out { type filter hook output priority 0 ; }", c.table)}
	for _, p := range all {
		rules = append(rules, fmt.Sprintf("add rule inet %s out ip saddr %s counter", c.table, p.ip))
	}
	for _, r := range rules {
		if out, err := exec.Command("nft", strings.Fields(r)...).CombinedOutput(); err != nil {
			t.Logf("nft %s: %v %s; falling back to transport counters", r, err, out)
			exec.Command("nft", "delete", "table", "inet", c.table).Run()
			c.table = ""
			return c
		}
	}
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", c.table).Run() })
	c.source = "nftables, all UDP+TCP bytes incl. headers"
	return c
}

func (c *byteCounter) read() []uint64 {
	out := make([]uint64, len(c.all))
	if c.table == "" {
		for i, p := range c.all {
			b, err := p.get("/v1/agent/peerd/info")
			if err != nil {
				continue
			}
			var st map[string]map[string]string
			json.Unmarshal(b, &st)
			out[i], _ = strconv.ParseUint(st["transport"]["bytes_out"], 10, 64)
		}
		return out
	}
	b, err := exec.Command("nft", "-j", "list", "table", "inet", c.table).Output()
	if err != nil {
		c.t.Fatal(err)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	json.Unmarshal(b, &doc)
	for _, item := range doc.Nftables {
		raw, ok := item["rule"]
		if !ok {
			continue
		}
		var rule struct {
			Expr []map[string]json.RawMessage `json:"expr"`
		}
		json.Unmarshal(raw, &rule)
		var ip string
		var bytes uint64
		for _, e := range rule.Expr {
			if m, ok := e["match"]; ok {
				var mm struct {
					Right any `json:"right"`
				}
				json.Unmarshal(m, &mm)
				ip = fmt.Sprint(mm.Right)
			}
			if cnt, ok := e["counter"]; ok {
				var cc struct {
					Bytes uint64 `json:"bytes"`
				}
				json.Unmarshal(cnt, &cc)
				bytes = cc.Bytes
			}
		}
		for i, p := range c.all {
			if p.ip == ip {
				out[i] = bytes
			}
		}
	}
	return out
}
