package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// HTTP API benchmarks against a real agent process; the load comes from the
// benchmark process. Run:
//
//	go test -run '^$' -bench 'HTTP' -benchtime 5s ./cmd/peerd
//
// Each reports req/s and p99 latency (ms) besides ns/op.

var (
	benchOnce  sync.Once
	benchAgent *agentProc
	benchMesh  *meshFixture
)

// persistentTB lets the fixture's agent outlive one benchmark run (Go
// runs cleanups after every b.N round); TestMain runs the cleanups.
type persistentTB struct{ testing.TB }

var benchCleanups []func()

func (persistentTB) Cleanup(f func()) { benchCleanups = append(benchCleanups, f) }

func (p persistentTB) TempDir() string {
	d, err := os.MkdirTemp("", "peerd-bench-")
	if err != nil {
		p.Fatal(err)
	}
	benchCleanups = append(benchCleanups, func() { os.RemoveAll(d) })
	return d
}

// TestMain stops the shared benchmark agent when the package's tests end
// and removes the peerd binary the tests built.
func TestMain(m *testing.M) {
	if spec := os.Getenv(relayEnv); spec != "" {
		runTestRelay(spec) // this process is a relay started by a benchmark
		return
	}
	code := m.Run()
	for i := len(benchCleanups) - 1; i >= 0; i-- {
		benchCleanups[i]()
	}
	if builtBin != "" {
		os.RemoveAll(filepath.Dir(builtBin))
	}
	os.Exit(code)
}

// benchSetup starts (once per process) an agent with 100 instances of web.
func benchSetup(b *testing.B) *agentProc {
	b.Helper()
	benchOnce.Do(func() {
		benchMesh = newMesh(persistentTB{b})
		benchAgent = benchMesh.start("bench", agentOpts{})
		for i := 1; i <= 100; i++ {
			body := fmt.Sprintf(`{"Name":"web","ID":"web-%d","Port":%d,"Tags":["v1"],"Check":{"TTL":"1h","Status":"passing"}}`, i, 8000+i)
			if _, err := benchAgent.put("/v1/agent/service/register", body); err != nil {
				b.Fatal(err)
			}
		}
		benchAgent.kvPut("bench/key", strings.Repeat("v", 100))
	})
	if benchAgent == nil {
		b.Fatal("bench agent not started")
	}
	return benchAgent
}

// loadClient has enough idle connections for the parallel load.
func loadClient(conns int) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
		DisableCompression: true,
	}}
}

// runLoad runs b.N requests over 32 goroutines and reports req/s and p99.
func runLoad(b *testing.B, req func(c *http.Client) error) {
	const workers = 32
	c := loadClient(workers)
	lat := make([][]time.Duration, workers)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Value
	b.ResetTimer()
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				t0 := time.Now()
				if err := req(c); err != nil {
					failed.Store(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
}

func getOK(c *http.Client, url string, gzip bool) error {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if gzip {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

func BenchmarkHTTPHealthService100(b *testing.B) {
	p := benchSetup(b)
	url := p.httpURL("/v1/health/service/web")
	runLoad(b, func(c *http.Client) error { return getOK(c, url, false) })
}

func BenchmarkHTTPHealthService100Gzip(b *testing.B) {
	p := benchSetup(b)
	url := p.httpURL("/v1/health/service/web")
	runLoad(b, func(c *http.Client) error { return getOK(c, url, true) })
}

func BenchmarkHTTPKVGet(b *testing.B) {
	p := benchSetup(b)
	url := p.httpURL("/v1/kv/bench/key")
	runLoad(b, func(c *http.Client) error { return getOK(c, url, false) })
}

func BenchmarkHTTPKVPut(b *testing.B) {
	p := benchSetup(b)
	var n atomic.Int64
	runLoad(b, func(c *http.Client) error {
		url := p.httpURL("/v1/kv/bench/put/" + strconv.FormatInt(n.Add(1)%1000, 10))
		req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader("value"))
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("PUT: %s", resp.Status)
		}
		return nil
	})
}

// procStats reads a process's resident memory (kB) and CPU time (ticks).
func procStats(pid int) (rssKB int64, cpuTicks int64) {
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "VmRSS:") {
				f := strings.Fields(l)
				rssKB, _ = strconv.ParseInt(f[1], 10, 64)
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i > 0 {
			f := strings.Fields(s[i+2:])
			if len(f) > 13 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				st, _ := strconv.ParseInt(f[12], 10, 64)
				cpuTicks = u + st
			}
		}
	}
	return rssKB, cpuTicks
}

// BenchmarkHTTPWatchers10k parks 10,000 blocking queries on one key (each
// its own TCP connection), measures the agent's memory and idle CPU, then
// one op is: a put, and the time until every watcher has returned. Run
// it with -benchtime 1x: the Go runtime keeps the memory of earlier rounds,
// so later rounds do not show what the watchers cost.
func BenchmarkHTTPWatchers10k(b *testing.B) {
	p := benchSetup(b)
	b.ResetTimer()
	const watchers = 10000
	pid := p.cmd.Process.Pid
	rss0, _ := procStats(pid)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		_, idxStr := kvIndex(b, p, "bench/watch")
		var started, done sync.WaitGroup
		var errs atomic.Int64
		started.Add(watchers)
		done.Add(watchers)
		for w := 0; w < watchers; w++ {
			go func() {
				defer done.Done()
				d := net.Dialer{Timeout: 10 * time.Second}
				conn, err := d.Dial("tcp", p.ip+":8500")
				if err != nil {
					errs.Add(1)
					started.Done()
					return
				}
				defer conn.Close()
				fmt.Fprintf(conn, "GET /v1/kv/bench/watch?index=%s&wait=5m HTTP/1.1\r\nHost: x\r\n\r\n", idxStr)
				started.Done()
				buf := make([]byte, 512)
				conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
				if _, err := conn.Read(buf); err != nil {
					errs.Add(1)
				}
			}()
		}
		started.Wait()
		// Let every request reach the agent and park, then measure idle.
		time.Sleep(3 * time.Second)
		rss1, cpu1 := procStats(pid)
		time.Sleep(5 * time.Second)
		_, cpu2 := procStats(pid)
		b.ReportMetric(float64(rss0)/1024, "MB-rss-before")
		b.ReportMetric(float64(rss1)/1024, "MB-rss-parked")
		b.ReportMetric(float64(cpu2-cpu1)/100/5*100, "idle-cpu-%")
		b.StartTimer()
		t0 := time.Now()
		p.kvPut("bench/watch", strconv.Itoa(i))
		done.Wait()
		b.ReportMetric(float64(time.Since(t0).Milliseconds()), "wake-all-ms")
		if n := errs.Load(); n > 0 {
			b.Fatalf("%d watchers failed", n)
		}
	}
}

// kvIndex returns X-Consul-Index of a key read (as a string).
func kvIndex(b *testing.B, p *agentProc, key string) (uint64, string) {
	resp, err := http.Get(p.httpURL("/v1/kv/" + key))
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	s := resp.Header.Get("X-Consul-Index")
	v, _ := strconv.ParseUint(s, 10, 64)
	return v, s
}
