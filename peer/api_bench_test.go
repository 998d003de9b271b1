package peer

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
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
