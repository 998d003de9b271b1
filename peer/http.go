package peer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Consul's blocking-query limits: a wait defaults to 5 minutes, is capped at
// 10 minutes, and gets up to wait/16 of random jitter so that many watchers
// do not wake together.
const (
	defaultBlockingWait = 5 * time.Minute
	maxBlockingWait     = 10 * time.Minute
)

// httpError is an error with the HTTP status it maps to. Its message is the
// response body, as Consul sends plain-text errors.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func errorf(code int, format string, args ...any) error {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

// route is one API endpoint: a method set and a path prefix (exact when
// exact is set). Routing is by raw path on purpose: net/http.ServeMux would
// clean "//" away, and Fabio sends KV paths with "//" in them.
type route struct {
	methods string // space-separated, e.g. "GET PUT"
	path    string
	exact   bool
	handle  func(w http.ResponseWriter, r *http.Request, rest string) error

	requests atomic.Uint64 // served (routed) requests, for /v1/agent/metrics
	errors   atomic.Uint64 // of which answered with an error status
}

// apiServer serves the Consul-compatible HTTP API.
type apiServer struct {
	a      *Agent
	routes []route
	cache  respCache // encoded bodies of hot reads (api_cache.go)
}

func (s *apiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.EscapedPath()
	if p, err := unescapePath(path); err == nil {
		path = p
	}
	var matched *route
	for i := range s.routes {
		rt := &s.routes[i]
		if rt.exact && path == rt.path || !rt.exact && strings.HasPrefix(path, rt.path) {
			matched = rt
			break
		}
	}
	if matched == nil {
		http.Error(w, "Invalid URL path: not a recognized HTTP API endpoint", http.StatusNotFound)
		return
	}
	if !methodAllowed(matched.methods, r.Method) {
		w.Header().Set("Allow", strings.ReplaceAll(matched.methods, " ", ", "))
		http.Error(w, fmt.Sprintf("method %s not allowed", r.Method), http.StatusMethodNotAllowed)
		return
	}
	setConsulHeaders(w)
	if !s.authorized(r) {
		http.Error(w, "Permission denied: this agent requires an ACL token (?token=, X-Consul-Token or Authorization: Bearer)", http.StatusForbidden)
		return
	}
	if dc := r.URL.Query().Get("dc"); dc != "" && !strings.EqualFold(dc, s.a.cfg.Datacenter) {
		// One datacenter per mesh: there is nowhere to forward to.
		http.Error(w, fmt.Sprintf("No path to datacenter %q (this mesh is %q)", dc, s.a.cfg.Datacenter), http.StatusInternalServerError)
		return
	}
	rest := strings.TrimPrefix(path, matched.path)
	matched.requests.Add(1)
	if err := matched.handle(w, r, rest); err != nil {
		matched.errors.Add(1)
		var he *httpError
		if errors.As(err, &he) {
			http.Error(w, he.msg, he.code)
			return
		}
		s.a.log.Warn("http request failed", "path", r.URL.Path, "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

func methodAllowed(methods, m string) bool {
	for _, x := range strings.Fields(methods) {
		if x == m {
			return true
		}
	}
	return false
}

// unescapePath decodes %XX escapes without cleaning the path.
func unescapePath(p string) (string, error) {
	if !strings.Contains(p, "%") {
		return p, nil
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			v, err := strconv.ParseUint(p[i+1:i+3], 16, 8)
			if err != nil {
				return "", err
			}
			b.WriteByte(byte(v))
			i += 2
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String(), nil
}

// setConsulHeaders sets what Consul clients expect on every answer. There is
// no leader to know of; every answer comes from the local replica.
func setConsulHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("X-Consul-KnownLeader", "true")
	h.Set("X-Consul-LastContact", "0")
	h.Set("X-Consul-Default-ACL-Policy", "allow")
}

// setIndex sets X-Consul-Index; Consul clients treat 0 as "no index", so it
// is never below 1.
func setIndex(w http.ResponseWriter, idx uint64) {
	if idx == 0 {
		idx = 1
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(idx, 10))
}

func writeJSON(w http.ResponseWriter, v any) error {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("http: encode response: %w", err)
	}
	return nil
}

// flagSet reports a boolean query parameter the way Consul does: by its
// presence, whatever its value ("?recurse", "?recurse=true", "?recurse=").
func flagSet(r *http.Request, name string) bool {
	_, ok := r.URL.Query()[name]
	return ok
}

// blockingParams parses ?index= and ?wait=. wait is a Go duration
// ("120000ms", "5m") or, like Consul, a bare number of seconds.
func blockingParams(r *http.Request) (index uint64, wait time.Duration, err error) {
	q := r.URL.Query()
	if v := q.Get("index"); v != "" {
		index, err = strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, errorf(http.StatusBadRequest, "Invalid index: %q is not a number", v)
		}
	}
	wait = defaultBlockingWait
	if v := q.Get("wait"); v != "" {
		wait, err = parseWait(v)
		if err != nil {
			return 0, 0, errorf(http.StatusBadRequest, "Invalid wait time: %v", err)
		}
	}
	if wait > maxBlockingWait {
		wait = maxBlockingWait
	}
	return index, wait, nil
}

func parseWait(v string) (time.Duration, error) {
	if n, err := strconv.ParseUint(v, 10, 64); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, err
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", v)
	}
	return d, nil
}

// waitFor implements a Consul blocking query over one watch scope. current
// returns the scope's index and a channel closed on its next change. It
// returns as soon as the index passes minIndex, or when wait (plus jitter)
// ends, or when the client goes away.
func waitFor(ctx context.Context, minIndex uint64, wait time.Duration, current func() (uint64, <-chan struct{})) {
	if minIndex == 0 {
		return
	}
	jitter := time.Duration(0)
	if wait >= 16 {
		jitter = time.Duration(rand.Int64N(int64(wait / 16)))
	}
	timer := time.NewTimer(wait + jitter)
	defer timer.Stop()
	for {
		idx, ch := current()
		// An index that went backwards (a restarted agent) answers at once,
		// as Consul's client library expects to reset on it.
		if idx != minIndex {
			return
		}
		select {
		case <-ch:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
