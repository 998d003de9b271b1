package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/gossip"
	"github.com/peerd/peerd/identity"
	"github.com/peerd/peerd/transport"
)

// The data plane (docs/DATAPLANE.md): Consul Connect without Envoy and
// without a CA. Apps talk plaintext to upstream listeners of their local
// agent; the agent carries each TCP connection as one QUIC stream
// (transport.KindProxy) to the peer running a destination instance, which
// authorizes it (certificate, registration, intention) before forwarding
// to the instance's local port.

// Data plane limits (docs/DATAPLANE.md "limits").
const (
	// maxConnsPerUpstream bounds the connections one upstream listener
	// carries at once; more are accepted and closed at once, counted as
	// errors.
	maxConnsPerUpstream = 16384
	// maxInboundPerPeer bounds the proxied connections one caller node may
	// hold open to this node at once; more are refused with replyLimit.
	maxInboundPerPeer = 8192
	// proxyOpenTimeout bounds opening a stream to one instance's peer
	// (including a QUIC dial when no connection is open); the next
	// instance is tried after it.
	proxyOpenTimeout = 3 * time.Second
	// proxyDialTimeout bounds the destination's dial of its local service.
	proxyDialTimeout = 3 * time.Second
	// proxyFailHold is how long a peer whose stream could not be opened is
	// tried only after every other instance.
	proxyFailHold = 5 * time.Second
	// listenerRetry is how often upstream listeners that could not bind
	// are retried.
	listenerRetry = 5 * time.Second
)

// dataPlane is the agent's Connect proxy: upstream listeners (outbound)
// and the KindProxy stream handler (inbound).
type dataPlane struct {
	a            *Agent
	log          *slog.Logger
	defaultAllow bool

	mu         sync.Mutex
	listeners  map[netip.AddrPort]*upstreamListener // guarded by mu
	specs      []upstreamSpec                       // every upstream this node declares, held or not; guarded by mu
	held       map[string]*proxyHold                // by service ID: upstreams a proxy process listens on (proxy_standalone.go); guarded by mu
	problems   []string                             // last reconcile's problems; guarded by mu
	bindWarned map[netip.AddrPort]string            // the bind error last logged per address; guarded by mu
	inbound    map[*inboundConn]struct{}            // open inbound connections; guarded by mu
	perPeer    map[string]int                       // open inbound connections per caller node; guarded by mu
	instOpen   map[string]int                       // open outbound connections per instance key; guarded by mu
	failing    map[string]time.Time                 // node ID → tried last until; guarded by mu
	upStats    map[string]*proxyMetrics             // outbound, by destination service; guarded by mu
	inStats    map[string]*proxyMetrics             // inbound, by destination service; guarded by mu
	rnd        *rand.Rand                           // guarded by mu
	// statuses is a membership snapshot by node name, taken at statusesAt
	// (proxy_route.go); guarded by mu. The map is never modified once
	// published.
	statuses   map[string]gossip.MemberStatus
	statusesAt time.Time

	decisions decisionCache
	facts     nodeFacts

	holdsEnd chan struct{} // closed when the HTTP server shuts down: hold streams end
	endOnce  sync.Once

	wg sync.WaitGroup
}

// proxyMetrics count one upstream (outbound) or one served destination
// (inbound).
type proxyMetrics struct {
	conns    atomic.Uint64 // connections accepted
	open     atomic.Int64  // open now
	bytesOut atomic.Uint64 // caller → service
	bytesIn  atomic.Uint64 // service → caller
	denies   atomic.Uint64 // refused by authorization (L4)
	l7Denies atomic.Uint64 // HTTP requests answered 403 by an L7 intention
	closed   atomic.Uint64 // open connections closed because authorization changed
	errors   atomic.Uint64 // no instance, unreachable peers, dial failures, limits
}

func newDataPlane(a *Agent) *dataPlane {
	var seed [32]byte
	copy(seed[:], a.id)
	return &dataPlane{
		a: a, log: a.log.With("component", "proxy"), defaultAllow: a.defaultAllow(),
		listeners: map[netip.AddrPort]*upstreamListener{}, held: map[string]*proxyHold{}, bindWarned: map[netip.AddrPort]string{}, holdsEnd: make(chan struct{}), inbound: map[*inboundConn]struct{}{},
		perPeer: map[string]int{}, instOpen: map[string]int{}, failing: map[string]time.Time{},
		upStats: map[string]*proxyMetrics{}, inStats: map[string]*proxyMetrics{},
		rnd: rand.New(rand.NewChaCha8(seed)),
	}
}

// startProxy registers the stream handler and starts the listeners and the
// watcher; called from Start once transport and the replica are ready. The
// data plane itself exists from New on: DNS and the HTTP API, started
// earlier, read it.
func (a *Agent) startProxy() {
	dp := a.proxy
	a.tr.Handle(transport.KindProxy, dp.serveStream)
	dp.reconcile()
	dp.wg.Add(1)
	go func() { defer dp.wg.Done(); dp.watch(a.ctx) }()
}

// closeProxy stops the listeners and every proxied connection and waits
// for the data plane's goroutines. Called from Close after the agent's
// context is cancelled.
func (a *Agent) closeProxy() {
	dp := a.proxy
	if dp == nil {
		return
	}
	dp.mu.Lock()
	for k, l := range dp.listeners {
		l.close()
		delete(dp.listeners, k)
	}
	for c := range dp.inbound {
		c.kill()
	}
	dp.mu.Unlock()
	dp.wg.Wait()
}

// watch reconciles listeners when this node's services change and
// re-authorizes open inbound connections when intentions or revocations
// change. Each round arms the three watches before it reads any state, so
// a change that lands while another is being handled is seen on the next
// round (re-arming after handling lost such changes: a service registered
// during an intention change got no listener).
func (dp *dataPlane) watch(ctx context.Context) {
	a := dp.a
	retry := time.NewTicker(listenerRetry)
	defer retry.Stop()
	var svcSeen, intSeen, revSeen uint64 // indexes handled; 0 before the first round
	for {
		si, svc := a.replica.WatchIndex(crdt.ScopeNode(a.id))
		ii, ints := a.replica.WatchIndex(crdt.ScopeIntentions)
		ri, revs := a.replica.WatchIndex(crdt.ScopeRevocations)
		if si != svcSeen {
			svcSeen = si
			dp.reconcile()
		}
		if ii != intSeen {
			if intSeen != 0 {
				dp.reauthorize("intentions changed")
			}
			intSeen = ii
		}
		if ri != revSeen {
			if revSeen != 0 {
				dp.reauthorize("revocations changed")
			}
			revSeen = ri
		}
		select {
		case <-ctx.Done():
			return
		case <-svc:
		case <-ints:
		case <-revs:
		case <-retry.C:
			if dp.hasUnbound() {
				dp.reconcile()
			}
		}
	}
}

// upstreamListener is one local upstream port.
type upstreamListener struct {
	spec atomic.Pointer[upstreamSpec]
	ln   net.Listener // nil while the port could not be bound
	err  error        // the bind error while ln is nil

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // guarded by mu
	closed bool                  // guarded by mu
}

func (l *upstreamListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || len(l.conns) >= maxConnsPerUpstream {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *upstreamListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// close stops accepting and closes every connection the listener carries.
func (l *upstreamListener) close() {
	l.mu.Lock()
	l.closed = true
	conns := l.conns
	l.conns = nil
	l.mu.Unlock()
	if l.ln != nil {
		l.ln.Close()
	}
	for c := range conns {
		c.Close()
	}
}

// stopAccepting closes the listening socket only: the connections it
// accepted continue (the agent's context still ends them on Close).
func (l *upstreamListener) stopAccepting() {
	if l.ln != nil {
		l.ln.Close()
	}
}

func (dp *dataPlane) hasUnbound() bool {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	for _, l := range dp.listeners {
		if l.ln == nil {
			return true
		}
	}
	return false
}

// reconcile makes the upstream listeners match this node's services:
// new ones are bound, gone ones closed (with their connections), changed
// ones re-pointed in place. Upstreams a proxy process holds are not bound
// by the agent: their listener, if any, stops accepting and its open
// connections continue.
func (dp *dataPlane) reconcile() {
	a := dp.a
	specs, problems := upstreamsOf(a.replica.NodeServices(a.id))
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if a.ctx.Err() != nil {
		return
	}
	dp.specs = specs
	want := make(map[netip.AddrPort]upstreamSpec, len(specs))
	handed := map[netip.AddrPort]bool{}
	for _, s := range specs {
		if dp.held[s.SourceID] != nil {
			handed[s.Bind] = true
			continue
		}
		want[s.Bind] = s
	}
	dp.syncHeldLocked()
	for _, p := range problems {
		if !containsString(dp.problems, p) {
			dp.log.Warn("upstream ignored", "problem", p)
		}
	}
	dp.problems = problems
	for bind, l := range dp.listeners {
		if handed[bind] {
			l.stopAccepting()
			delete(dp.listeners, bind)
			dp.log.Info("upstream listener handed to a proxy process", "bind", bind)
			continue
		}
		s, ok := want[bind]
		if !ok || l.ln == nil {
			l.close()
			delete(dp.listeners, bind)
			if !ok {
				dp.log.Info("upstream listener closed", "bind", bind)
			}
			continue
		}
		if old := l.spec.Load(); *old != s {
			l.spec.Store(&s)
			dp.log.Info("upstream listener re-pointed", "bind", bind, "source", s.Source, "destination", s.Destination)
		}
	}
	for bind, s := range want {
		if _, ok := dp.listeners[bind]; ok {
			continue
		}
		l := &upstreamListener{conns: map[net.Conn]struct{}{}}
		l.spec.Store(&s)
		ln, err := net.Listen("tcp", bind.String())
		if err != nil {
			l.err = err
			dp.listeners[bind] = l
			if dp.bindWarned[bind] != err.Error() { // once per cause, not every retry
				dp.bindWarned[bind] = err.Error()
				dp.log.Warn("upstream listener not bound; retrying", "bind", bind, "destination", s.Destination, "err", err)
			}
			continue
		}
		delete(dp.bindWarned, bind)
		l.ln = ln
		dp.listeners[bind] = l
		dp.log.Info("upstream listener", "bind", bind, "source", s.Source, "destination", s.Destination)
		dp.wg.Add(1)
		go func() { defer dp.wg.Done(); dp.acceptLoop(l) }()
	}
}

func containsString(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (dp *dataPlane) acceptLoop(l *upstreamListener) {
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				dp.log.Warn("upstream accept", "bind", l.spec.Load().Bind, "err", err)
			}
			return
		}
		spec := l.spec.Load()
		m := dp.metrics(dp.upStats, spec.Destination)
		if !l.track(c) {
			m.errors.Add(1)
			c.Close()
			continue
		}
		dp.wg.Add(1)
		go func() {
			defer dp.wg.Done()
			defer l.untrack(c)
			dp.outbound(c, spec, m)
		}()
	}
}

// proxyClient is the app's side of an outbound connection: a TCP
// connection accepted by an upstream listener, or one tunnelled from a
// standalone proxy process (proxy_standalone.go).
type proxyClient interface {
	halfCloser
	SetReadDeadline(time.Time) error
}

// metrics returns the counters of name in table, creating them.
func (dp *dataPlane) metrics(table map[string]*proxyMetrics, name string) *proxyMetrics {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	m := table[name]
	if m == nil {
		m = &proxyMetrics{}
		table[name] = m
	}
	return m
}

// outbound carries one accepted client connection to an instance of the
// upstream's destination.
func (dp *dataPlane) outbound(c net.Conn, spec *upstreamSpec, m *proxyMetrics) {
	a := dp.a
	m.conns.Add(1)
	m.open.Add(1)
	defer m.open.Add(-1)
	defer c.Close()
	client, ok := c.(proxyClient)
	if !ok {
		m.errors.Add(1)
		return
	}
	cands := dp.candidates(spec.Destination)
	dp.mu.Lock()
	order := pickOrder(cands, dp.rnd)
	dp.mu.Unlock()
	if len(order) == 0 {
		m.errors.Add(1)
		dp.log.Warn("no passing instance of upstream", "destination", spec.Destination, "source", spec.Source)
		denyClient(client, nil, http.StatusServiceUnavailable, "peerd: no passing instance of service "+spec.Destination+" is reachable")
		return
	}
	for _, inst := range order {
		hdr := proxyHeader{Source: spec.Source, Destination: spec.Destination, InstanceID: inst.ID}
		dp.openCount(inst.key(), 1)
		var err error
		var done bool
		if inst.Origin == a.id {
			done, err = dp.outboundLocal(client, hdr, m)
		} else {
			done, err = dp.outboundRemote(client, inst, hdr, m)
		}
		dp.openCount(inst.key(), -1)
		if done {
			if err != nil && !isClosedErr(err) {
				dp.log.Debug("proxied connection ended", "destination", spec.Destination, "instance", inst.ID, "node", inst.Node, "err", err)
			}
			return
		}
		dp.log.Warn("upstream instance unreachable; trying the next", "destination", spec.Destination, "instance", inst.ID, "node", inst.Node, "err", err)
		dp.markFailing(inst.Origin)
	}
	m.errors.Add(1)
	denyClient(client, nil, http.StatusServiceUnavailable, "peerd: no instance of service "+spec.Destination+" could be reached")
}

func (dp *dataPlane) openCount(key string, d int) {
	dp.mu.Lock()
	dp.instOpen[key] += d
	if dp.instOpen[key] <= 0 {
		delete(dp.instOpen, key)
	}
	dp.mu.Unlock()
}

func (dp *dataPlane) markFailing(origin string) {
	dp.mu.Lock()
	dp.failing[origin] = time.Now().Add(proxyFailHold)
	dp.mu.Unlock()
}

// outboundRemote opens a stream to the instance's peer and pipes. done is
// false when the stream could not be opened (the caller tries the next
// instance); once the stream is open the connection is committed to it.
func (dp *dataPlane) outboundRemote(client proxyClient, inst instance, hdr proxyHeader, m *proxyMetrics) (done bool, err error) {
	a := dp.a
	ap, ok := a.view.addr(inst.Origin)
	if !ok {
		return false, fmt.Errorf("proxy: no address known for node %s", inst.Node)
	}
	pub, err := identity.ParseNodeID(inst.Origin)
	if err != nil {
		return false, err
	}
	meta, err := encodeProxyHeader(hdr)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(a.ctx, proxyOpenTimeout)
	s, _, err := a.tr.OpenStream(ctx, ap, pub, transport.Header{Kind: transport.KindProxy, Meta: meta})
	cancel()
	if err != nil {
		return false, err
	}
	defer s.Close()
	// The agent stopping ends the connection (Close waits for this
	// goroutine before it closes the transport).
	stop := context.AfterFunc(a.ctx, func() { s.Close(); client.Close() })
	defer stop()

	// Client bytes go out at once; the reply frame comes back ahead of the
	// service's first bytes, so allowing costs no round trip.
	first := make(chan []byte, 1)
	upDone := make(chan error, 1)
	go func() {
		upDone <- copyFirst(s, client, &m.bytesOut, first)
	}()
	rep, err := readProxyReply(s)
	if err != nil {
		m.errors.Add(1)
		client.Close()
		s.Close()
		<-upDone
		return true, fmt.Errorf("proxy: reading the reply of %s: %w", inst.Node, err)
	}
	if rep.Code != replyOK {
		if rep.Code == replyDenied {
			m.denies.Add(1)
		} else {
			m.errors.Add(1)
		}
		dp.log.Info("upstream connection refused", "destination", hdr.Destination, "source", hdr.Source, "node", inst.Node, "reason", rep.Reason)
		var fb []byte
		select {
		case fb = <-first:
		case <-time.After(100 * time.Millisecond):
		}
		denyClient(client, fb, replyStatus(rep.Code), "peerd: "+rep.Reason)
		s.Close()
		<-upDone
		return true, nil
	}
	err = copyHalf(client, s, &m.bytesIn)
	if err != nil {
		client.Close()
		s.Close()
	}
	err2 := <-upDone
	if err == nil {
		err = err2
	}
	return true, err
}

// copyFirst is copyHalf that hands the first bytes read to first (or nil
// when the source ended before sending any). On failure it closes only
// dst, the stream: the client is the caller's to close, which may first
// answer it (a 403 after a deny) — closing it here raced that answer.
func copyFirst(dst, src halfCloser, n *atomic.Uint64, first chan<- []byte) error {
	bp := proxySmallBufs.Get().(*[]byte)
	buf := *bp
	nr, rerr := src.Read(buf)
	first <- bytes.Clone(buf[:min(nr, 16)])
	if nr > 0 {
		nw, werr := dst.Write(buf[:nr])
		n.Add(uint64(nw))
		if werr != nil {
			proxySmallBufs.Put(bp)
			dst.Close()
			return werr
		}
	}
	proxySmallBufs.Put(bp)
	if rerr != nil {
		if errors.Is(rerr, io.EOF) {
			return dst.CloseWrite()
		}
		// Closed by this agent (listener removed, agent stopping) or failed:
		// end the stream too.
		dst.Close()
		return rerr
	}
	err := copyHalf(dst, src, n)
	if err != nil {
		dst.Close()
	}
	return err
}

// outboundLocal serves a connection whose destination instance runs on
// this node: the same authorization as a remote caller, without a stream.
func (dp *dataPlane) outboundLocal(client proxyClient, hdr proxyHeader, m *proxyMetrics) (bool, error) {
	in := dp.metrics(dp.inStats, hdr.Destination)
	auth := dp.authorize(dp.a.id, hdr)
	if auth.code != replyOK {
		if auth.code == replyDenied {
			m.denies.Add(1)
			in.denies.Add(1)
		} else {
			m.errors.Add(1)
			in.errors.Add(1)
		}
		dp.log.Info("upstream connection refused", "destination", hdr.Destination, "source", hdr.Source, "reason", auth.reason)
		denyClient(client, nil, replyStatus(auth.code), "peerd: "+auth.reason)
		return true, nil
	}
	backend, err := net.DialTimeout("tcp", auth.target, proxyDialTimeout)
	if err != nil {
		m.errors.Add(1)
		in.errors.Add(1)
		return true, err
	}
	ic := &inboundConn{caller: dp.a.id, hdr: hdr, l7: auth.l7, stream: client, backend: backend.(*net.TCPConn)}
	return true, dp.serveAllowed(ic, in)
}

// denyClient tells the local client why its connection is refused when it
// speaks HTTP/1 (status code with the reason as body), else it just
// closes. first is what the client sent already; nil means nothing was
// read yet, and up to 16 bytes are awaited briefly.
func denyClient(c proxyClient, first []byte, code int, reason string) {
	if first == nil {
		var b [16]byte
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, _ := io.ReadAtLeast(c, b[:], 4)
		first = b[:n]
	}
	if looksHTTP(first) {
		writeHTTPError(c, code, reason, true)
	}
	c.Close()
}

// replyStatus is the HTTP status a refused connection's reply code maps to.
func replyStatus(code uint8) int {
	switch code {
	case replyDenied:
		return http.StatusForbidden
	case replyUnavailable, replyLimit:
		return http.StatusServiceUnavailable
	}
	return http.StatusBadGateway
}

// looksHTTP reports whether the first bytes of a connection start an
// HTTP/1 request line.
func looksHTTP(b []byte) bool {
	for _, m := range []string{"GET ", "POST ", "PUT ", "DELETE ", "HEAD ", "PATCH ", "OPTIONS "} {
		if bytes.HasPrefix(b, []byte(m)) {
			return true
		}
	}
	return false
}

// upstreamFor returns the local listener address of an upstream to dst
// (DNS NAME.connect.consul), preferring a bound one.
func (dp *dataPlane) upstreamFor(dst string) (netip.AddrPort, bool) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	var best netip.AddrPort
	consider := func(bind netip.AddrPort) {
		if !best.IsValid() || bind.Port() < best.Port() {
			best = bind
		}
	}
	for bind, l := range dp.listeners {
		if strings.EqualFold(l.spec.Load().Destination, dst) && l.ln != nil {
			consider(bind)
		}
	}
	for _, s := range dp.specs {
		if dp.held[s.SourceID] != nil && strings.EqualFold(s.Destination, dst) {
			consider(s.Bind)
		}
	}
	return best, best.IsValid()
}

// connectStats is the "connect" section of infoStats: listeners, their
// problems, and counters per upstream and per served destination.
func (a *Agent) connectStats() map[string]string {
	dp := a.proxy
	st := map[string]string{}
	if dp == nil {
		return st
	}
	dp.mu.Lock()
	defer dp.mu.Unlock()
	st["default_intention_policy"] = a.cfg.DefaultIntentionPolicy
	st["inbound_open"] = fmt.Sprint(len(dp.inbound))
	st["goroutines"] = fmt.Sprint(runtime.NumGoroutine()) // whole agent
	bySource := map[string][]string{}
	for bind, l := range dp.listeners {
		s := l.spec.Load()
		state := "listening"
		if l.ln == nil {
			state = "unbound: " + l.err.Error()
		}
		st["listener."+bind.String()] = fmt.Sprintf("%s -> %s (%s)", s.Source, s.Destination, state)
		bySource[s.SourceID] = append(bySource[s.SourceID], s.Destination+"="+bind.String())
	}
	for _, s := range dp.specs {
		h := dp.held[s.SourceID]
		if h == nil {
			continue
		}
		st["listener."+s.Bind.String()] = fmt.Sprintf("%s -> %s (held by the proxy process at %s)", s.Source, s.Destination, h.remote)
		bySource[s.SourceID] = append(bySource[s.SourceID], s.Destination+"="+s.Bind.String())
	}
	for id, h := range dp.held {
		h.mu.Lock()
		st["proxy."+id] = fmt.Sprintf("held by %s since %s, %d tunnels open", h.remote, h.since.UTC().Format(time.RFC3339), len(h.conns))
		h.mu.Unlock()
	}
	for id, ups := range bySource {
		sort.Strings(ups)
		st["upstreams."+id] = strings.Join(ups, ",")
	}
	if len(dp.problems) > 0 {
		st["problems"] = strings.Join(dp.problems, "; ")
	}
	put := func(prefix string, table map[string]*proxyMetrics) {
		for name, m := range table {
			p := prefix + name + "."
			st[p+"connections"] = fmt.Sprint(m.conns.Load())
			st[p+"open"] = fmt.Sprint(m.open.Load())
			st[p+"bytes_out"] = fmt.Sprint(m.bytesOut.Load())
			st[p+"bytes_in"] = fmt.Sprint(m.bytesIn.Load())
			st[p+"denies"] = fmt.Sprint(m.denies.Load())
			st[p+"l7_denies"] = fmt.Sprint(m.l7Denies.Load())
			st[p+"closed_on_change"] = fmt.Sprint(m.closed.Load())
			st[p+"errors"] = fmt.Sprint(m.errors.Load())
		}
	}
	put("upstream.", dp.upStats)
	put("inbound.", dp.inStats)
	return st
}
