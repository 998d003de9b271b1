package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDataPlaneFigures measures the data plane on real processes: two
// agents (n1 runs the caller's upstream listener, n2 the destination), a
// destination HTTP service (peerd demo-service, its own process) and this
// test process as the load generator. Everything is on loopback. It
// prints figures instead of asserting them; `make bench` runs it with
// PEERD_BENCH=1 and docs/BENCHMARKS.md records the output.
func TestDataPlaneFigures(t *testing.T) {
	if os.Getenv("PEERD_BENCH") == "" {
		t.Skip("set PEERD_BENCH=1 (make bench) to measure data plane figures")
	}
	n := 3000
	if v := os.Getenv("PEERD_BENCH_REQUESTS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	m := newMesh(t)
	quiet := []string{"-log-level", "warn", "-default-intention-policy", "allow"}
	n1 := m.start("n1", agentOpts{extra: quiet})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}, extra: quiet})
	expectMemberStatus(t, n1, "n2", memberAlive)
	expectMemberStatus(t, n2, "n1", memberAlive)
	port := freeTCPPort(t, n2.ip)
	upPort := freeTCPPort(t, n1.ip)
	n2.register(t, map[string]any{"Name": "echo", "Address": n2.ip, "Port": port})
	n1.register(t, map[string]any{"Name": "load", "Port": 1, "Connect": map[string]any{"SidecarService": map[string]any{"Proxy": map[string]any{
		"Upstreams": []map[string]any{{"DestinationName": "echo", "LocalBindAddress": n1.ip, "LocalBindPort": upPort}}}}}})
	m.background(t, "demo-service", "-name", "echo", "-listen", fmt.Sprintf("%s:%d", n2.ip, port))
	direct := fmt.Sprintf("http://%s:%d/x", n2.ip, port)
	proxied := fmt.Sprintf("http://%s:%d/x", n1.ip, upPort)
	// The same upstream of a second service whose listeners a standalone
	// `connect proxy` process holds: app -> proxy process -> tunnel -> n1.
	spPort := freeTCPPort(t, n1.ip)
	n1.register(t, map[string]any{"Name": "load2", "Port": 1, "Connect": map[string]any{"SidecarService": map[string]any{"Proxy": map[string]any{
		"Upstreams": []map[string]any{{"DestinationName": "echo", "LocalBindAddress": n1.ip, "LocalBindPort": spPort}}}}}})
	m.background(t, "connect", "proxy", "-http-addr", n1.ip+":8500", "-sidecar-for", "load2", "-log-level", "warn")
	waitFor(t, 10*time.Second, func() error {
		if st := n1.connectStat("proxy.load2"); !strings.HasPrefix(st, "held by") {
			return fmt.Errorf("proxy.load2 = %q", st)
		}
		return nil
	})
	standalone := fmt.Sprintf("http://%s:%d/x", n1.ip, spPort)
	// The floor: two plain TCP relay processes (io.Copy both ways, no
	// encryption, no stream multiplexing) between the same load generator
	// and service: what any pair of proxy processes costs on this machine.
	r2 := startTestRelay(t, n2.ip, net.JoinHostPort(n2.ip, strconv.Itoa(port)))
	r1 := startTestRelay(t, n1.ip, r2)
	relayed := "http://" + r1 + "/x"
	expectHTTP(t, "GET", direct, 200, "echo")
	expectHTTP(t, "GET", proxied, 200, "echo")
	expectHTTP(t, "GET", relayed, 200, "echo")
	expectHTTP(t, "GET", standalone, 200, "echo")

	// Added latency, 1 KB request over a kept-alive connection; direct and
	// proxied interleaved in blocks so both see the same machine load.
	body := bytes.Repeat([]byte("x"), 1024)
	keep := func() *http.Client {
		return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
	}
	cd, cp, cr, cs := keep(), keep(), keep(), keep()
	var dLat, pLat, rLat, sLat []float64
	one := func(c *http.Client, u string) float64 {
		start := time.Now()
		resp, err := c.Post(u, "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return float64(time.Since(start).Microseconds())
	}
	for i := 0; i < 200; i++ { // warm-up
		one(cd, direct)
		one(cp, proxied)
		one(cr, relayed)
		one(cs, standalone)
	}
	for done := 0; done < n; done += 100 {
		for i := 0; i < 100; i++ {
			dLat = append(dLat, one(cd, direct))
		}
		for i := 0; i < 100; i++ {
			pLat = append(pLat, one(cp, proxied))
		}
		for i := 0; i < 100; i++ {
			rLat = append(rLat, one(cr, relayed))
		}
		for i := 0; i < 100; i++ {
			sLat = append(sLat, one(cs, standalone))
		}
	}
	added := func(lat []float64, q float64) float64 { return percentile(lat, q) - percentile(dLat, q) }
	t.Logf("1 KB request, kept-alive, %d each: direct p50 %.0f µs p90 %.0f p99 %.0f; proxied p50 %.0f p90 %.0f p99 %.0f; added p50 %.0f µs p90 %.0f p99 %.0f",
		len(dLat), percentile(dLat, 50), percentile(dLat, 90), percentile(dLat, 99),
		percentile(pLat, 50), percentile(pLat, 90), percentile(pLat, 99),
		added(pLat, 50), added(pLat, 90), added(pLat, 99))
	t.Logf("floor, two plain TCP relay processes: added p50 %.0f µs p90 %.0f p99 %.0f; the peerd pair above the floor: p50 %.0f µs p99 %.0f",
		added(rLat, 50), added(rLat, 90), added(rLat, 99), percentile(pLat, 50)-percentile(rLat, 50), percentile(pLat, 99)-percentile(rLat, 99))
	t.Logf("through a standalone connect proxy process in front of the pair: added p50 %.0f µs p90 %.0f p99 %.0f",
		added(sLat, 50), added(sLat, 90), added(sLat, 99))

	// New connection on a warm peer connection: TCP connect + one request,
	// a new connection every time.
	fresh := func() *http.Client { return &http.Client{Transport: &http.Transport{DisableKeepAlives: true}} }
	fd, fp, fs := fresh(), fresh(), fresh()
	var dNew, pNew, sNew []float64
	for i := 0; i < n/3; i++ {
		dNew = append(dNew, one(fd, direct))
		pNew = append(pNew, one(fp, proxied))
		sNew = append(sNew, one(fs, standalone))
	}
	t.Logf("new connection + 1 KB request, %d each: direct p50 %.0f µs p99 %.0f; proxied p50 %.0f µs p99 %.0f; added p50 %.0f µs p99 %.0f",
		len(dNew), percentile(dNew, 50), percentile(dNew, 99), percentile(pNew, 50), percentile(pNew, 99),
		percentile(pNew, 50)-percentile(dNew, 50), percentile(pNew, 99)-percentile(dNew, 99))
	t.Logf("new connection through a standalone connect proxy process: added p50 %.0f µs p99 %.0f",
		percentile(sNew, 50)-percentile(dNew, 50), percentile(sNew, 99)-percentile(dNew, 99))

	// Bulk throughput: one 1 GiB upload, direct and through the pair.
	const bulk = 1 << 30
	for _, c := range []struct{ name, url string }{{"direct", direct}, {"proxied", proxied}} {
		start := time.Now()
		resp, err := keep().Post(c.url, "application/octet-stream", io.LimitReader(zeroReader{}, bulk))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		el := time.Since(start)
		t.Logf("bulk 1 GiB upload %s: %.2f Gbit/s (%v)", c.name, float64(bulk)*8/el.Seconds()/1e9, el.Round(time.Millisecond))
	}

	// Idle proxied connections: memory and goroutines per connection on
	// both agents.
	const idle = 1000
	before := rssMB([]*agentProc{n1, n2})
	g1, g2 := goroutines(n1), goroutines(n2)
	var conns []net.Conn
	for i := 0; i < idle; i++ {
		c, err := net.Dial("tcp", net.JoinHostPort(n1.ip, strconv.Itoa(upPort)))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: echo\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	after := rssMB([]*agentProc{n1, n2})
	h1, h2 := goroutines(n1), goroutines(n2)
	t.Logf("%d idle proxied connections: caller agent +%.1f MB RSS (%.1f KB/conn), +%d goroutines (%.1f/conn); destination agent +%.1f MB (%.1f KB/conn), +%d goroutines (%.1f/conn)",
		idle, after[0]-before[0], (after[0]-before[0])*1024/idle, h1-g1, float64(h1-g1)/idle,
		after[1]-before[1], (after[1]-before[1])*1024/idle, h2-g2, float64(h2-g2)/idle)
	for _, c := range conns {
		c.Close()
	}
	t.Logf("caller agent connect stats: connections %s, errors %s", n1.connectStat("upstream.echo.connections"), n1.connectStat("upstream.echo.errors"))
}

// relayEnv names the environment variable that turns the test binary into
// a TCP relay ("LISTEN>TARGET"; TestMain checks it).
const relayEnv = "PEERD_TEST_RELAY"

// startTestRelay starts this test binary as a relay process listening on
// ip (a free port) and forwarding to target; it returns the listen address.
func startTestRelay(t testing.TB, ip, target string) string {
	t.Helper()
	addr := net.JoinHostPort(ip, strconv.Itoa(freeTCPPort(t, ip)))
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), relayEnv+"="+addr+">"+target)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay on %s did not start: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runTestRelay is the relay process: every accepted connection is joined
// to a new connection to the target with io.Copy in both directions.
func runTestRelay(spec string) {
	listen, target, ok := strings.Cut(spec, ">")
	if !ok {
		fmt.Fprintf(os.Stderr, "relay: bad spec %q\n", spec)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			d, err := net.Dial("tcp", target)
			if err != nil {
				return
			}
			defer d.Close()
			go func() { io.Copy(d, c); d.(*net.TCPConn).CloseWrite() }()
			io.Copy(c, d)
		}()
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func goroutines(p *agentProc) int {
	n, _ := strconv.Atoi(strings.TrimSpace(p.connectStat("goroutines")))
	return n
}
