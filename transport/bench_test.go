package transport

import (
	"context"
	"io"
	"runtime"
	"slices"
	"testing"
	"time"
)

// reportLatency adds p50 and p99 of ds (in µs) to b's results.
func reportLatency(b *testing.B, ds []time.Duration) {
	b.Helper()
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	pct := func(p float64) float64 {
		return float64(ds[min(len(ds)-1, int(float64(len(ds))*p))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}

// msgEchoHandler echoes framed messages until the stream ends.
func msgEchoHandler(ctx context.Context, _ PeerInfo, _ Header, s *Stream) {
	for {
		m, err := ReadMsg(s, DefaultMaxMsgSize)
		if err != nil {
			return
		}
		if err := WriteMsg(s, m); err != nil {
			return
		}
	}
}

// BenchmarkHandshake measures a new connection: QUIC + TLS 1.3 handshake
// with mutual certificate verification, until the dialer can open streams.
func BenchmarkHandshake(b *testing.B) {
	a, c := newNode(b, nodeOpts{}), newNode(b, nodeOpts{})
	ctx := testCtx(b)
	ds := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		pc, err := a.conn(ctx, c.Addr(), c.pub)
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
		pc.release(time.Now())
		a.ClosePeer(c.pub)
	}
	reportLatency(b, ds)
}

// BenchmarkNewStream measures a new stream on a warm connection: open,
// header, the acceptor dispatches to its handler, one byte there and back.
func BenchmarkNewStream(b *testing.B) {
	a, c := newNode(b, nodeOpts{}), newNode(b, nodeOpts{})
	c.Handle(KindSync, func(ctx context.Context, _ PeerInfo, _ Header, s *Stream) {
		var one [1]byte
		if _, err := io.ReadFull(s, one[:]); err == nil {
			_, _ = s.Write(one[:])
		}
	})
	ctx := testCtx(b)
	warm, _, err := a.OpenStream(ctx, c.Addr(), c.pub, Header{Kind: KindSync})
	if err != nil {
		b.Fatal(err)
	}
	warm.Close()
	ds := make([]time.Duration, 0, b.N)
	var one [1]byte
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		s, _, err := a.OpenStream(ctx, c.Addr(), c.pub, Header{Kind: KindSync})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := s.Write(one[:]); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(s, one[:]); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
		s.Close()
	}
	b.StopTimer()
	reportLatency(b, ds)
	if st := a.Stats(); st.ConnectionsTotal != 1 {
		b.Fatalf("%d connections, want 1", st.ConnectionsTotal)
	}
}

// BenchmarkEcho1KB measures the round trip of one 1 KiB framed message on
// an open stream.
func BenchmarkEcho1KB(b *testing.B) {
	a, c := newNode(b, nodeOpts{}), newNode(b, nodeOpts{})
	c.Handle(KindSync, msgEchoHandler)
	ctx := testCtx(b)
	s, _, err := a.OpenStream(ctx, c.Addr(), c.pub, Header{Kind: KindSync})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	msg := make([]byte, 1024)
	ds := make([]time.Duration, 0, b.N)
	b.SetBytes(2 * 1024)
	b.ReportAllocs()
	for b.Loop() {
		t0 := time.Now()
		if err := WriteMsg(s, msg); err != nil {
			b.Fatal(err)
		}
		if _, err := ReadMsg(s, DefaultMaxMsgSize); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
	}
	reportLatency(b, ds)
}

// BenchmarkBulkThroughput pushes data one way over a single stream; the
// acceptor discards it and confirms the byte count at the end. The
// sub-benchmarks compare peerd's flow-control windows with quic-go's.
func BenchmarkBulkThroughput(b *testing.B) {
	b.Run("peerd-windows", func(b *testing.B) { benchBulk(b, nodeOpts{}) })
	b.Run("quic-go-default-windows", func(b *testing.B) { benchBulk(b, nodeOpts{quicWindows: true}) })
}

func benchBulk(b *testing.B, o nodeOpts) {
	a, c := newNode(b, o), newNode(b, o)
	c.Handle(KindProxy, func(ctx context.Context, _ PeerInfo, _ Header, s *Stream) {
		n, _ := io.Copy(io.Discard, s)
		_ = WriteMsg(s, []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)})
	})
	ctx := testCtx(b)
	s, _, err := a.OpenStream(ctx, c.Addr(), c.pub, Header{Kind: KindProxy})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	chunk := make([]byte, 64<<10)
	const perOp = 1 << 20
	b.SetBytes(perOp)
	t0 := time.Now()
	for b.Loop() {
		for off := 0; off < perOp; off += len(chunk) {
			if _, err := s.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.CloseWrite(); err != nil {
		b.Fatal(err)
	}
	if _, err := ReadMsg(s, 16); err != nil { // all bytes arrived
		b.Fatal(err)
	}
	el := time.Since(t0)
	b.ReportMetric(float64(b.N)*perOp*8/el.Seconds()/1e9, "Gbit/s")
	a.mu.Lock()
	pc := a.byKey[string(c.pub)]
	a.mu.Unlock()
	if pc != nil {
		cs := pc.qc.ConnectionStats()
		if cs.PacketsSent > 0 {
			b.ReportMetric(100*float64(cs.PacketsLost)/float64(cs.PacketsSent), "%lost")
		}
		if !pc.qc.ConnectionState().GSO {
			b.Log("GSO not in use")
		}
	}
}

// BenchmarkIdlePeerConnection measures what one idle connection costs:
// n dialers each connect to one acceptor and go idle; the heap, stack and
// goroutine growth over the same transports unconnected is divided by n.
// Each connection is counted with both of its ends (dialer and acceptor).
func BenchmarkIdlePeerConnection(b *testing.B) {
	const n = 100
	for b.Loop() {
		func() {
			srv := newNode(b, nodeOpts{})
			srv.Handle(KindSync, echoHandler)
			clients := make([]*node, n)
			for i := range clients {
				clients[i] = newNode(b, nodeOpts{})
			}
			defer func() {
				for _, c := range clients {
					c.Close()
				}
				srv.Close()
			}()
			heap0, g0 := memNow()
			ctx := testCtx(b)
			for _, c := range clients {
				if _, err := echoOnce(b, ctx, c, srv, []byte("x")); err != nil {
					b.Fatal(err)
				}
			}
			waitFor(b, 10*time.Second, "streams drained", func() bool { return srv.Stats().Streams == 0 })
			heap1, g1 := memNow()
			b.ReportMetric(float64(heap1-heap0)/n, "B/conn")
			b.ReportMetric(float64(g1-g0)/n, "goroutines/conn")
		}()
	}
}

// memNow returns heap-in-use plus goroutine stacks after GC, and the
// goroutine count.
func memNow() (int64, int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc + ms.StackInuse), runtime.NumGoroutine()
}
