package resolver

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// staticSource is a read-only Source for benchmarks: no lock, like a
// replica snapshot read.
type staticSource map[string][]Instance

func (s staticSource) AppendServiceInstances(dst []Instance, name string) []Instance {
	return append(dst, s[name]...)
}
func (staticSource) Node(string) (Node, bool)                      { return Node{}, false }
func (staticSource) ConnectUpstream(string) (netip.AddrPort, bool) { return netip.AddrPort{}, false }

// In-process handler cost, without sockets: what one query costs the
// resolver itself (and its allocations).
func BenchmarkServeDNS(b *testing.B) {
	src := staticSource{"web": webInstances(10)}
	s, err := New(Config{}, src)
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
	}{{"A", dns.TypeA}, {"SRV", dns.TypeSRV}} {
		b.Run(tc.name, func(b *testing.B) {
			q := question("web.service.consul.", tc.qtype, 1232)
			w := &discardWriter{}
			b.ReportAllocs()
			for b.Loop() {
				s.ServeDNS(w, q)
			}
			if w.n == 0 {
				b.Fatal("nothing written")
			}
		})
	}
}

// discardWriter is a ResponseWriter that only counts bytes (UDP client).
type discardWriter struct {
	recorder
	n int
}

func (w *discardWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }
func (w *discardWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	w.n += len(b)
	return err
}

// loadResult mirrors dnsload's JSON output.
type loadResult struct {
	Concurrency int     `json:"concurrency"`
	Queries     int64   `json:"queries"`
	Errors      int64   `json:"errors"`
	QPS         float64 `json:"qps"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	P999us      float64 `json:"p999_us"`

	// cpuPerQuery is the CPU time this process (the server side) spent
	// per answered query during the run, in µs: unlike qps it hardly
	// depends on what else the shared machine is doing.
	cpuPerQuery float64
}

// BenchmarkDNSLoad measures the resolver over real UDP sockets with the
// load generator resolver/internal/dnsload running as a separate process,
// for A and SRV lookups of a service with 10 instances, at several
// concurrency levels; then the same load against a minimal miekg/dns server
// that returns the same records from a fixed answer, in the same run, and
// reports the ratio. It runs the sweep once whatever b.N is (the load
// generator sets its own duration). Tune with PEERD_DNSLOAD_LEVELS
// ("1,4,16,64") and PEERD_DNSLOAD_DURATION ("3s"). Run it with
//
//	go test -run '^$' -bench DNSLoad -v ./resolver/
func BenchmarkDNSLoad(b *testing.B) {
	levels := envOr("PEERD_DNSLOAD_LEVELS", "1,4,16,64")
	duration := envOr("PEERD_DNSLOAD_DURATION", "3s")
	loader := buildLoader(b)

	src := staticSource{"web": webInstances(10)}
	s, err := New(Config{Addr: "127.0.0.1:0"}, src)
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	fixed := startFixedServer(b, s)

	b.ResetTimer()
	for _, qt := range []string{"A", "SRV"} {
		b.Logf("%s web.service.consul. (10 instances), EDNS0 1232, %s per level, GOMAXPROCS=%d, NumCPU=%d", qt, duration, runtime.GOMAXPROCS(0), runtime.NumCPU())
		b.Logf("| type | conc | resolver qps | p50 µs | p99 µs | CPU µs/q | fixed-answer qps | p50 µs | p99 µs | CPU µs/q | qps ratio |")
		// Levels alternate between the two servers, so that both see the
		// same background load on this shared machine.
		for _, level := range strings.Split(levels, ",") {
			o := runLoader(b, loader, s.Addr().String(), qt, level, duration)[0]
			f := runLoader(b, loader, fixed, qt, level, duration)[0]
			ratio := o.QPS / f.QPS
			b.Logf("| %s | %d | %.0f | %.0f | %.0f | %.1f | %.0f | %.0f | %.0f | %.1f | %.2f |", qt, o.Concurrency, o.QPS, o.P50us, o.P99us, o.cpuPerQuery, f.QPS, f.P50us, f.P99us, f.cpuPerQuery, ratio)
			if o.Errors > 0 || f.Errors > 0 {
				b.Logf("   errors: resolver %d, fixed %d", o.Errors, f.Errors)
			}
			if o.Concurrency == 16 {
				b.ReportMetric(o.QPS, qt+"-qps@16")
				b.ReportMetric(o.P99us, qt+"-p99-µs@16")
				b.ReportMetric(ratio, qt+"-ratio@16")
			}
		}
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// buildLoader compiles dnsload into a temporary directory.
func buildLoader(b *testing.B) string {
	b.Helper()
	goBin, err := exec.LookPath("go") // go test puts its own GOROOT/bin first
	if err != nil {
		b.Skip("no go toolchain to build the load generator")
	}
	out := filepath.Join(b.TempDir(), "dnsload")
	cmd := exec.Command(goBin, "build", "-o", out, "github.com/peerd/peerd/resolver/internal/dnsload")
	if msg, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build dnsload: %v\n%s", err, msg)
	}
	return out
}

// runLoader runs dnsload against addr and parses its JSON lines.
func runLoader(b *testing.B, loader, addr, qtype, levels, duration string) []loadResult {
	b.Helper()
	cmd := exec.Command(loader, "-server", addr, "-name", "web.service.consul.", "-type", qtype,
		"-c", levels, "-duration", duration, "-warmup", "0s", "-json")
	cmd.Stderr = os.Stderr
	cpu0 := processCPU(b)
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("dnsload: %v", err)
	}
	cpu := processCPU(b) - cpu0
	var rs []loadResult
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var r loadResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			b.Fatalf("dnsload output %q: %v", sc.Text(), err)
		}
		rs = append(rs, r)
	}
	if len(rs) == 1 && rs[0].Queries > 0 {
		rs[0].cpuPerQuery = float64(cpu) / float64(time.Microsecond) / float64(rs[0].Queries)
	}
	return rs
}

// processCPU returns the user+system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startFixedServer starts the baseline: a minimal miekg/dns UDP server whose
// handler replies with a prebuilt answer (the records the resolver gives for
// the same question, built once), configured like the resolver's.
func startFixedServer(b *testing.B, s *Server) string {
	b.Helper()
	answers := map[uint16]*dns.Msg{}
	for _, qt := range []uint16{dns.TypeA, dns.TypeSRV} {
		rec := &recorder{}
		s.ServeDNS(rec, question("web.service.consul.", qt, 1232))
		if rec.msg == nil || len(rec.msg.Answer) != 10 {
			b.Fatalf("reference answer for %s: %v", dns.TypeToString[qt], rec.msg)
		}
		answers[qt] = rec.msg
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		ref, ok := answers[r.Question[0].Qtype]
		m := new(dns.Msg)
		m.SetReply(r)
		if ok {
			m.Authoritative = true
			m.Answer = ref.Answer
			m.Extra = ref.Extra // includes the OPT record
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	up := make(chan struct{})
	srv := &dns.Server{PacketConn: pc, Handler: h, UDPSize: 4096, NotifyStartedFunc: func() { close(up) }}
	go srv.ActivateAndServe()
	<-up
	b.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}
