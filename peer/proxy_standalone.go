package peer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"
)

// Standalone proxy processes (docs/DATAPLANE.md "A process per service").
// `peerd connect proxy -sidecar-for ID` holds the upstream listeners of one
// local service: while its hold request is open the agent does not bind
// them, the process does, and it carries every connection it accepts to
// the agent over an HTTP upgrade of a new API connection (a tunnel). From
// there the connection takes the same outbound path as one accepted by the
// agent's own listener: routing, the QUIC stream, the deny answers and the
// per-upstream counters. When the hold ends (the process exits or its API
// connection breaks) the agent binds the listeners again.
//
// Both endpoints are served to loopback callers only: a tunnel speaks as
// the held service, and the API may listen on other addresses.

// tunnelProtocol is the Upgrade token of a tunnel request.
const tunnelProtocol = "peerd-tunnel/1"

// proxyHoldHeartbeat is how often an idle hold stream carries an empty
// line, so that the proxy process notices an agent that stopped answering.
const proxyHoldHeartbeat = 10 * time.Second

// proxyHold is one standalone proxy process holding the upstreams of a
// local service.
type proxyHold struct {
	id     string // the service ID whose upstreams are held
	remote string // the proxy process's API connection
	since  time.Time
	wake   chan struct{} // cap 1: this node's upstreams may have changed

	mu    sync.Mutex
	conns map[net.Conn]netip.AddrPort // open tunnels by upstream bind; guarded by mu
}

// HoldUpdate is one line of a hold stream: the upstreams the proxy process
// must listen on now.
type HoldUpdate struct {
	Service   string
	Upstreams []HeldUpstream
}

// HeldUpstream is one upstream listener of a held service.
type HeldUpstream struct {
	DestinationName string
	Bind            string // ip:port to listen on
	Source          string // the service the connections speak as
}

func fromLoopback(r *http.Request) bool {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	return err == nil && ap.Addr().Unmap().IsLoopback()
}

// hold registers a proxy process as the holder of id's upstreams and
// closes the agent's own listeners for them (their open connections
// continue).
func (dp *dataPlane) hold(id, remote string) (*proxyHold, error) {
	dp.mu.Lock()
	if old := dp.held[id]; old != nil {
		dp.mu.Unlock()
		return nil, errorf(http.StatusConflict, "the upstreams of service %s are already held by the proxy process at %s (since %s)",
			id, old.remote, old.since.UTC().Format(time.RFC3339))
	}
	h := &proxyHold{id: id, remote: remote, since: time.Now(), wake: make(chan struct{}, 1), conns: map[net.Conn]netip.AddrPort{}}
	dp.held[id] = h
	dp.mu.Unlock()
	dp.log.Info("standalone proxy holds upstreams", "service", id, "remote", remote)
	dp.reconcile()
	return h, nil
}

// release ends a hold; the agent binds the listeners again. Tunnels the
// process opened are left to it: they end with its sockets.
func (dp *dataPlane) release(h *proxyHold) {
	dp.mu.Lock()
	if dp.held[h.id] == h {
		delete(dp.held, h.id)
	}
	dp.mu.Unlock()
	dp.log.Info("standalone proxy released upstreams", "service", h.id, "remote", h.remote)
	dp.reconcile()
	if !dp.hasUnbound() {
		return
	}
	// The process's listening sockets may close just after its hold
	// connection (a killed process loses both at once): retry binding
	// briefly before falling back to the listenerRetry tick.
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.a.ctx.Err() != nil {
		return
	}
	dp.wg.Add(1)
	go func() {
		defer dp.wg.Done()
		for range releaseRebindTries {
			select {
			case <-dp.a.ctx.Done():
				return
			case <-time.After(releaseRebindEvery):
			}
			if !dp.hasUnbound() {
				return
			}
			dp.reconcile()
		}
	}()
}

// After a hold ends, binding is retried every releaseRebindEvery, up to
// releaseRebindTries times.
const (
	releaseRebindEvery = 50 * time.Millisecond
	releaseRebindTries = 40
)

// endHolds ends every hold stream: the HTTP server is shutting down.
func (dp *dataPlane) endHolds() {
	dp.endOnce.Do(func() { close(dp.holdsEnd) })
}

// heldUpstreams is what a hold stream sends: the upstreams id declares
// now, in bind order.
func (dp *dataPlane) heldUpstreams(id string) HoldUpdate {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	u := HoldUpdate{Service: id, Upstreams: []HeldUpstream{}}
	for _, s := range dp.specs {
		if s.SourceID == id {
			u.Upstreams = append(u.Upstreams, HeldUpstream{DestinationName: s.Destination, Bind: s.Bind.String(), Source: s.Source})
		}
	}
	sort.Slice(u.Upstreams, func(i, j int) bool { return u.Upstreams[i].Bind < u.Upstreams[j].Bind })
	return u
}

// syncHeldLocked wakes every hold stream and closes tunnels whose upstream
// is no longer declared, as a removed listener closes its connections.
// Called by reconcile with dp.mu held.
func (dp *dataPlane) syncHeldLocked() {
	declared := map[string]map[netip.AddrPort]bool{}
	for _, s := range dp.specs {
		if declared[s.SourceID] == nil {
			declared[s.SourceID] = map[netip.AddrPort]bool{}
		}
		declared[s.SourceID][s.Bind] = true
	}
	for id, h := range dp.held {
		select {
		case h.wake <- struct{}{}:
		default:
		}
		h.mu.Lock()
		for c, bind := range h.conns {
			if !declared[id][bind] {
				c.Close()
				delete(h.conns, c)
			}
		}
		h.mu.Unlock()
	}
}

// agentProxyHold serves GET /v1/agent/peerd/connect/proxy/<ID>: the
// caller holds the upstreams of local service ID for as long as the
// response is open. The body is newline-delimited JSON: a HoldUpdate
// first and after every change, and an empty line every 10 s.
func (s *apiServer) agentProxyHold(w http.ResponseWriter, r *http.Request, id string) error {
	a := s.a
	if !fromLoopback(r) {
		return errorf(http.StatusForbidden, "connect proxy: upstreams can be held only from this host (loopback), not from %s", r.RemoteAddr)
	}
	if id == "" || strings.Contains(id, "/") {
		return errorf(http.StatusBadRequest, "Missing service ID: GET /v1/agent/peerd/connect/proxy/<service ID>")
	}
	if _, ok := a.localServices()[id]; !ok {
		return errorf(http.StatusNotFound, "unknown service ID %q: register the service on this agent before starting its proxy", id)
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		return fmt.Errorf("connect proxy: the response cannot be streamed")
	}
	h, err := a.proxy.hold(id, r.RemoteAddr)
	if err != nil {
		return err
	}
	defer a.proxy.release(h)
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	beat := time.NewTicker(proxyHoldHeartbeat)
	defer beat.Stop()
	var last []byte
	for {
		b, err := json.Marshal(a.proxy.heldUpstreams(id))
		if err != nil {
			return nil // the status is sent; nothing more to say
		}
		if !bytes.Equal(b, last) {
			if _, err := w.Write(append(b, '\n')); err != nil {
				return nil
			}
			fl.Flush()
			last = b
		}
		select {
		case <-r.Context().Done():
			return nil
		case <-a.proxy.holdsEnd:
			return nil
		case <-h.wake:
		case <-beat.C:
			if _, err := w.Write([]byte("\n")); err != nil {
				return nil
			}
			fl.Flush()
		}
	}
}

// agentProxyTunnel serves POST /v1/agent/peerd/connect/tunnel/<ID>?bind=
// with "Upgrade: peerd-tunnel/1": after the 101 answer the connection is
// an app connection accepted by the held upstream listener at bind.
func (s *apiServer) agentProxyTunnel(w http.ResponseWriter, r *http.Request, id string) error {
	a := s.a
	dp := a.proxy
	if !fromLoopback(r) {
		return errorf(http.StatusForbidden, "connect tunnel: only from this host (loopback), not from %s", r.RemoteAddr)
	}
	if !headerHasToken(r.Header.Get("Connection"), "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), tunnelProtocol) {
		return errorf(http.StatusBadRequest, "connect tunnel: the request must carry Connection: Upgrade and Upgrade: %s", tunnelProtocol)
	}
	bind, err := netip.ParseAddrPort(r.URL.Query().Get("bind"))
	if err != nil {
		return errorf(http.StatusBadRequest, "connect tunnel: bind must be ip:port: %v", err)
	}
	dp.mu.Lock()
	h := dp.held[id]
	var spec *upstreamSpec
	for _, s := range dp.specs {
		if s.SourceID == id && s.Bind == bind {
			spec = &s
			break
		}
	}
	stopping := a.ctx.Err() != nil
	if h != nil && spec != nil && !stopping {
		dp.wg.Add(1) // under dp.mu before closeProxy's Wait: see closeProxy
	}
	dp.mu.Unlock()
	switch {
	case stopping:
		return errorf(http.StatusServiceUnavailable, "connect tunnel: the agent is stopping")
	case h == nil:
		return errorf(http.StatusConflict, "connect tunnel: no proxy process holds the upstreams of service %s", id)
	case spec == nil:
		return errorf(http.StatusNotFound, "connect tunnel: service %s declares no upstream on %s", id, bind)
	}
	defer dp.wg.Done()
	m := dp.metrics(dp.upStats, spec.Destination)
	hj, ok := w.(http.Hijacker)
	if !ok {
		return fmt.Errorf("connect tunnel: the connection cannot be taken over")
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		return fmt.Errorf("connect tunnel: %w", err)
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		conn.Close()
		return nil
	}
	tc.SetDeadline(time.Time{}) // the server's header timeout no longer applies
	h.mu.Lock()
	full := len(h.conns) >= maxConnsPerUpstream
	if !full {
		h.conns[tc] = bind
	}
	h.mu.Unlock()
	if full {
		m.errors.Add(1)
		io.WriteString(tc, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		tc.Close()
		return nil
	}
	defer func() {
		h.mu.Lock()
		delete(h.conns, tc)
		h.mu.Unlock()
	}()
	if _, err := io.WriteString(tc, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+tunnelProtocol+"\r\n\r\n"); err != nil {
		tc.Close()
		return nil
	}
	var client net.Conn = tc
	if n := rw.Reader.Buffered(); n > 0 {
		early, _ := rw.Reader.Peek(n)
		client = &prefixedConn{TCPConn: tc, r: io.MultiReader(bytes.NewReader(bytes.Clone(early)), tc)}
	}
	dp.outbound(client, spec, m)
	return nil
}

// RefuseClient answers an app connection that cannot be carried: an HTTP/1
// client gets status code with reason as the body, as the agent's own
// listeners answer; other clients are closed. For standalone proxy
// processes.
func RefuseClient(c *net.TCPConn, code int, reason string) {
	denyClient(c, nil, code, reason)
}

// prefixedConn is a tunnel whose first bytes were read ahead by the HTTP
// server.
type prefixedConn struct {
	*net.TCPConn
	r io.Reader
}

func (c *prefixedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// headerHasToken reports whether a comma-separated header value holds tok
// (case-insensitive), as in "Connection: keep-alive, Upgrade".
func headerHasToken(v, tok string) bool {
	for _, f := range strings.Split(v, ",") {
		if strings.EqualFold(strings.TrimSpace(f), tok) {
			return true
		}
	}
	return false
}

// ReadHoldUpdates reads a hold stream, calling beat for every line (empty
// lines are heartbeats) and fn for every update. It returns when the stream ends or fails, or fn
// returns an error. Lines over 1 MiB are an error.
func ReadHoldUpdates(r io.Reader, beat func(), fn func(HoldUpdate) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		if beat != nil {
			beat()
		}
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var u HoldUpdate
		if err := json.Unmarshal(line, &u); err != nil {
			return fmt.Errorf("connect proxy: malformed hold update from the agent: %w", err)
		}
		if err := fn(u); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("connect proxy: reading the hold stream: %w", err)
	}
	return io.EOF
}
