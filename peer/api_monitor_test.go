package peer

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// gatedWriter is a ResponseWriter whose first Write blocks until release
// is closed: a monitor client that stopped reading.
type gatedWriter struct {
	header  http.Header
	entered chan struct{} // closed when the first Write starts
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	buf     bytes.Buffer
}

func (g *gatedWriter) Header() http.Header { return g.header }
func (g *gatedWriter) WriteHeader(int)     {}
func (g *gatedWriter) Flush()              {}
func (g *gatedWriter) Write(p []byte) (int, error) {
	g.once.Do(func() { close(g.entered) })
	<-g.release
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.Write(p)
}

func (g *gatedWriter) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.buf.String()
}

// TestMonitorSlowClient: while a monitor client does not read, the agent
// keeps logging without waiting; the client then gets the buffered lines,
// a note counting the lines it lost, and the lines after.
func TestMonitorSlowClient(t *testing.T) {
	fan := NewLogFan()
	log := slog.New(fan.Handler(slog.DiscardHandler))
	m := newMonitorAPI(&Agent{log: log})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, "GET", "/v1/agent/monitor?loglevel=info", nil)
	w := &gatedWriter{header: http.Header{}, entered: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- m.serve(w, req, "") }()

	deadline := time.Now().Add(10 * time.Second)
	for fan.Subscribers() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("monitor did not subscribe")
		}
		time.Sleep(5 * time.Millisecond)
	}
	log.Info("first")
	select {
	case <-w.entered: // the handler holds "first" and waits on the client
	case <-time.After(10 * time.Second):
		t.Fatal("handler did not write the first line")
	}
	const more = 1000
	for i := range more { // must not block
		log.Info("burst", "i", i)
	}
	wantDropped := more - monitorBuffer
	if got := fan.Dropped(); got != uint64(wantDropped) {
		t.Fatalf("dropped %d lines, want %d", got, wantDropped)
	}
	close(w.release)
	for !strings.Contains(w.String(), fmt.Sprintf("i=%d\n", monitorBuffer-1)) {
		if time.Now().After(deadline) {
			t.Fatalf("client never got the buffered lines:\n%s", tail(w.String()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	log.Info("last")
	for !strings.Contains(w.String(), `msg=last`) {
		if time.Now().After(deadline) {
			t.Fatalf("client never got the last line:\n%s", tail(w.String()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	out := w.String()
	if n := strings.Count(out, "msg=burst"); n != monitorBuffer {
		t.Errorf("client got %d burst lines, want %d (its buffer)", n, monitorBuffer)
	}
	if !strings.Contains(out, "dropped 488 lines") {
		t.Errorf("no note of the dropped lines:\n%s", tail(out))
	}
	if fan.Subscribers() != 0 {
		t.Errorf("subscriber still attached after the client left")
	}
}

func tail(s string) string {
	if len(s) > 2000 {
		return s[len(s)-2000:]
	}
	return s
}

// TestMonitorEndsOnShutdown: an open monitor stream does not keep the HTTP
// server's Shutdown waiting (it would until its deadline).
func TestMonitorEndsOnShutdown(t *testing.T) {
	fan := NewLogFan()
	a := &Agent{log: slog.New(fan.Handler(slog.DiscardHandler))}
	m := newMonitorAPI(a)
	a.httpSrv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.serve(w, r, "")
	})}
	ts := httptest.NewUnstartedServer(a.httpSrv.Handler)
	ts.Config = a.httpSrv
	ts.Start()
	defer ts.Close()

	resp, err := http.Get(ts.URL + "/v1/agent/monitor")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for fan.Subscribers() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("monitor did not subscribe")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.httpSrv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with a monitor open: %v", err)
	}
	if n := fan.Subscribers(); n != 0 {
		t.Fatalf("%d subscribers after shutdown", n)
	}
}
