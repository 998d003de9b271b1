// Command dnsload is the resolver's load generator: it sends one DNS
// question over UDP at a fixed number of outstanding queries (closed loop:
// each worker waits for its answer before sending the next) and reports
// queries per second and latency percentiles per concurrency level.
//
// It runs as a separate process from the server under test, so that the
// figures include real sockets and do not share the server's Go runtime:
//
//	dnsload -server 127.0.0.1:8600 -name web.service.consul. -type SRV -c 1,4,16,64 -duration 5s
//
// With -json each level is printed as one JSON object per line (what the
// resolver's benchmark parses); otherwise as a table.
package main

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Result is one concurrency level's outcome.
type Result struct {
	Concurrency int     `json:"concurrency"`
	Queries     int64   `json:"queries"`
	Errors      int64   `json:"errors"`
	Seconds     float64 `json:"seconds"`
	QPS         float64 `json:"qps"`
	P50us       float64 `json:"p50_us"`
	P99us       float64 `json:"p99_us"`
	P999us      float64 `json:"p999_us"`
}

func main() {
	server := flag.String("server", "127.0.0.1:8600", "DNS server address (UDP)")
	name := flag.String("name", "web.service.consul.", "question name")
	qtype := flag.String("type", "A", "question type (A, AAAA, SRV, ...)")
	levels := flag.String("c", "1,4,16,64", "comma-separated concurrency levels (outstanding queries)")
	duration := flag.Duration("duration", 5*time.Second, "measured time per level")
	warmup := flag.Duration("warmup", 500*time.Millisecond, "unmeasured time before each level")
	edns := flag.Int("edns", 1232, "EDNS0 UDP buffer size to advertise; 0 sends no OPT record")
	timeout := flag.Duration("timeout", time.Second, "per-query timeout (counted as an error)")
	asJSON := flag.Bool("json", false, "print one JSON object per level instead of a table")
	flag.Parse()

	t, ok := dns.StringToType[strings.ToUpper(*qtype)]
	if !ok {
		fail(fmt.Errorf("unknown type %q", *qtype))
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(*name), t)
	if *edns > 0 {
		q.SetEdns0(uint16(*edns), false)
	}
	packed, err := q.Pack()
	if err != nil {
		fail(err)
	}
	var cs []int
	for _, f := range strings.Split(*levels, ",") {
		c, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || c < 1 {
			fail(fmt.Errorf("bad concurrency %q", f))
		}
		cs = append(cs, c)
	}
	if !*asJSON {
		fmt.Printf("%-6s %10s %8s %10s %10s %10s\n", "conc", "qps", "errors", "p50", "p99", "p99.9")
	}
	for _, c := range cs {
		r, err := run(*server, packed, c, *warmup, *duration, *timeout)
		if err != nil {
			fail(err)
		}
		if *asJSON {
			b, _ := json.Marshal(r)
			fmt.Println(string(b))
			continue
		}
		fmt.Printf("%-6d %10.0f %8d %9.0fµs %9.0fµs %9.0fµs\n", r.Concurrency, r.QPS, r.Errors, r.P50us, r.P99us, r.P999us)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "dnsload:", err)
	os.Exit(1)
}

// run drives c workers for warmup+d and measures the last d.
func run(server string, query []byte, c int, warmup, d, timeout time.Duration) (Result, error) {
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return Result{}, err
	}
	conns := make([]*net.UDPConn, c)
	for i := range conns {
		conn, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			for _, cc := range conns[:i] {
				cc.Close()
			}
			return Result{}, err
		}
		conns[i] = conn
	}
	defer func() {
		for _, cc := range conns {
			cc.Close()
		}
	}()

	var measuring, stop atomic.Bool
	var errs atomic.Int64
	lat := make([][]time.Duration, c)
	var wg sync.WaitGroup
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat[i] = worker(conns[i], query, uint16(i)<<8, timeout, &measuring, &stop, &errs)
		}()
	}
	time.Sleep(warmup) // a load generator's pacing, not a wait for a condition
	errs.Store(0)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(d)
	stop.Store(true)
	elapsed := time.Since(start)
	wg.Wait()

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	slices.Sort(all)
	r := Result{
		Concurrency: c,
		Queries:     int64(len(all)),
		Errors:      errs.Load(),
		Seconds:     elapsed.Seconds(),
		QPS:         float64(len(all)) / elapsed.Seconds(),
	}
	if len(all) == 0 {
		return r, errors.New("no answer received")
	}
	pct := func(p float64) float64 {
		i := int(p * float64(len(all)-1))
		return float64(all[i]) / float64(time.Microsecond)
	}
	r.P50us, r.P99us, r.P999us = pct(0.50), pct(0.99), pct(0.999)
	return r, nil
}

// worker sends the query, waits for the answer with the same id, and
// records latencies while measuring is set, until stop is set.
func worker(conn *net.UDPConn, query []byte, idBase uint16, timeout time.Duration, measuring, stop *atomic.Bool, errs *atomic.Int64) []time.Duration {
	q := append([]byte(nil), query...)
	buf := make([]byte, 65536)
	lat := make([]time.Duration, 0, 1<<16)
	id := idBase
	for !stop.Load() {
		id++
		binary.BigEndian.PutUint16(q[0:2], id)
		start := time.Now()
		if _, err := conn.Write(q); err != nil {
			errs.Add(1)
			continue
		}
		if err := conn.SetReadDeadline(start.Add(timeout)); err != nil {
			errs.Add(1)
			continue
		}
		ok := false
		for {
			n, err := conn.Read(buf)
			if err != nil {
				break // timeout: count it and send the next query
			}
			if n < 12 || binary.BigEndian.Uint16(buf[0:2]) != id {
				continue // a late answer to an earlier, timed-out query
			}
			// QR set, rcode NOERROR, at least one answer.
			ok = buf[2]&0x80 != 0 && buf[3]&0x0f == 0 && binary.BigEndian.Uint16(buf[6:8]) > 0
			break
		}
		elapsed := time.Since(start)
		if !ok {
			errs.Add(1)
			continue
		}
		if measuring.Load() {
			lat = append(lat, elapsed)
		}
	}
	return lat
}
