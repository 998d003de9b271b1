package peer

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestDebugPprofNeedsEnableDebug(t *testing.T) {
	root, node := newKeys(t)
	a := testAgent(t, t.TempDir(), root, node, []string{"*"})
	defer a.Close()
	h := newAPI(a)
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	if w := get("/debug/pprof/"); w.Code != http.StatusNotFound || !strings.Contains(w.Body.String(), "enable-debug") {
		t.Fatalf("without enable_debug: %d %q, want 404 naming -enable-debug", w.Code, w.Body.String())
	}
	a.SetLocalOptions(LocalOptions{EnableDebug: true})
	if w := get("/debug/pprof/"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "goroutine") {
		t.Fatalf("index: %d %q", w.Code, w.Body.String())
	}
	if w := get("/debug/pprof/goroutine?debug=1"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "goroutine profile") {
		t.Fatalf("goroutine profile: %d %q", w.Code, w.Body.String()[:min(200, w.Body.Len())])
	}
	a.SetLocalOptions(LocalOptions{EnableDebug: true, HTTPToken: "s3cret"})
	if w := get("/debug/pprof/"); w.Code != http.StatusForbidden {
		t.Fatalf("with a token and none given: %d, want 403", w.Code)
	}
}
