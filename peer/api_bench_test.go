package peer

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkHealthServiceHandler measures the handler alone (no network):
// GET /v1/health/service/web with 100 local instances.
//
//	go test -run '^$' -bench HealthServiceHandler ./peer
func BenchmarkHealthServiceHandler(b *testing.B) {
	root, node := newKeys(b)
	a := testAgent(b, b.TempDir(), root, node, []string{"*"})
	defer a.Close()
	for i := 1; i <= 100; i++ {
		err := a.RegisterService(context.Background(), ServiceDefinition{Name: "web", ID: fmt.Sprintf("web-%d", i), Port: 8000 + i,
			Checks: []CheckDefinition{{TTL: Duration(3600e9), Status: "passing"}}}, false)
		if err != nil {
			b.Fatal(err)
		}
	}
	h := newAPI(a)
	req := httptest.NewRequest(http.MethodGet, "/v1/health/service/web", nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatal(w.Code)
		}
	}
}

// BenchmarkKVPutHandler measures PUT /v1/kv/<key> in process, 16 writers
// in parallel (the commit queue batches them into one fsync).
//
//	go test -run '^$' -bench KVPutHandler ./peer
func BenchmarkKVPutHandler(b *testing.B) {
	root, node := newKeys(b)
	a := testAgent(b, b.TempDir(), root, node, []string{"*"})
	defer a.Close()
	h := newAPI(a)
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	var n atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPut, fmt.Sprintf("/v1/kv/bench/%d", n.Add(1)%1000), strings.NewReader("value"))
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK {
				b.Fatal(w.Code, w.Body.String())
			}
		}
	})
}
