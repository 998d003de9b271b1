package peer

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
	"github.com/peerd/peerd/transport"
)

// Intention default policies (Config.DefaultIntentionPolicy).
const (
	intentionAllow = "allow"
	intentionDeny  = "deny"
)

// inboundAuth is the destination's verdict on a new proxied connection.
type inboundAuth struct {
	code   uint8
	reason string
	target string // host:port of the local instance to forward to
	l7     bool   // the deciding intention has HTTP permissions
}

// authorize decides a new inbound connection from node caller carrying
// hdr. The order (docs/DATAPLANE.md "authorization order"): the caller's
// certificate is valid now; it allows the source service name; the caller
// runs an instance of the source service (or a proxy for it); the
// destination instance runs here; the intention source → destination (or
// the default policy) allows it.
func (dp *dataPlane) authorize(caller string, hdr proxyHeader) inboundAuth {
	a := dp.a
	caps, err := a.trust.capsOf(caller)
	if err != nil {
		return inboundAuth{code: replyDenied, reason: fmt.Sprintf("the certificate of node %s is not valid: %v", caller, err)}
	}
	if !caps.MayPublishService(hdr.Source) {
		return inboundAuth{code: replyDenied, reason: fmt.Sprintf("the certificate of node %s does not allow service %q", caller, hdr.Source)}
	}
	_, runs := dp.nodeFact(nodeFactKey{node: caller, kind: factRuns, a: hdr.Source}, func() (string, bool) {
		for _, e := range a.replica.NodeServices(caller) {
			if isSourceOf(e.Service, hdr.Source) {
				return "", true
			}
		}
		return "", false
	})
	if !runs {
		return inboundAuth{code: replyDenied, reason: fmt.Sprintf("node %s does not run service %q", caller, hdr.Source)}
	}
	target, ok := dp.localInstance(hdr)
	if !ok {
		return inboundAuth{code: replyUnavailable, reason: fmt.Sprintf("no instance %q of service %q runs on node %s", hdr.InstanceID, hdr.Destination, a.cfg.NodeName)}
	}
	dec := dp.decide(hdr.Source, hdr.Destination)
	if !dec.Allowed {
		return inboundAuth{code: replyDenied, reason: denyReason(hdr, dec)}
	}
	return inboundAuth{code: replyOK, target: target, l7: dec.Intention != nil && len(dec.Intention.Permissions) > 0}
}

// denyReason explains an L4 deny.
func denyReason(hdr proxyHeader, dec crdt.Decision) string {
	if dec.Intention == nil {
		return fmt.Sprintf("%s -> %s denied by the default intention policy (no intention matches)", hdr.Source, hdr.Destination)
	}
	in := dec.Intention
	return fmt.Sprintf("%s -> %s denied by intention %s -> %s (id %s, version %d)", hdr.Source, hdr.Destination, in.SourceName, in.DestinationName, in.ID, in.Version)
}

// localInstance finds the destination instance among this node's services
// and returns where to forward.
func (dp *dataPlane) localInstance(hdr proxyHeader) (string, bool) {
	key := nodeFactKey{node: dp.a.id, kind: factTarget, a: hdr.Destination, b: hdr.InstanceID}
	return dp.nodeFact(key, func() (string, bool) {
		for _, e := range dp.a.replica.NodeServices(dp.a.id) {
			s := e.Service
			if s.Name != hdr.Destination || s.Kind == "connect-proxy" {
				continue
			}
			if hdr.InstanceID != "" && s.ID != hdr.InstanceID {
				continue
			}
			return localTarget(s)
		}
		return "", false
	})
}

// inboundConn is one authorized connection served by this node, kept so
// that intention and revocation changes can re-check and close it.
type inboundConn struct {
	caller  string
	hdr     proxyHeader
	l7      bool
	stream  halfCloser // the caller's side: a stream, or the client for local callers
	backend *net.TCPConn
	reset   func() // aborts the caller's side; nil closes it

	killed atomic.Bool
}

// kill aborts both sides at once.
func (c *inboundConn) kill() {
	c.killed.Store(true)
	if c.reset != nil {
		c.reset()
	} else {
		c.stream.Close()
	}
	c.backend.Close()
}

// serveStream is the transport handler of KindProxy streams.
func (dp *dataPlane) serveStream(ctx context.Context, p transport.PeerInfo, th transport.Header, s *transport.Stream) {
	caller := identity.NodeID(ed25519.PublicKey(p.Key))
	hdr, err := decodeProxyHeader(th.Meta)
	if err != nil {
		writeProxyReply(s, proxyReply{Code: replyBadRequest, Reason: err.Error()})
		return
	}
	m := dp.metrics(dp.inStats, hdr.Destination)
	m.conns.Add(1)
	auth := dp.authorize(caller, hdr)
	if auth.code != replyOK {
		if auth.code == replyDenied {
			m.denies.Add(1)
		} else {
			m.errors.Add(1)
		}
		dp.log.Info("inbound connection refused", "caller", caller, "source", hdr.Source, "destination", hdr.Destination, "reason", auth.reason)
		writeProxyReply(s, proxyReply{Code: auth.code, Reason: auth.reason})
		return
	}
	dp.mu.Lock()
	over := dp.perPeer[caller] >= maxInboundPerPeer
	dp.mu.Unlock()
	if over {
		m.errors.Add(1)
		writeProxyReply(s, proxyReply{Code: replyLimit, Reason: fmt.Sprintf("node %s has %d proxied connections open to %s", caller, maxInboundPerPeer, dp.a.cfg.NodeName)})
		return
	}
	c, err := net.DialTimeout("tcp", auth.target, proxyDialTimeout)
	if err != nil {
		m.errors.Add(1)
		writeProxyReply(s, proxyReply{Code: replyUnavailable, Reason: fmt.Sprintf("service %s on node %s refused the connection: %v", hdr.Destination, dp.a.cfg.NodeName, err)})
		return
	}
	if err := writeProxyReply(s, proxyReply{Code: replyOK}); err != nil {
		c.Close()
		return
	}
	ic := &inboundConn{caller: caller, hdr: hdr, l7: auth.l7, stream: s, backend: c.(*net.TCPConn),
		reset: func() { s.Reset(transport.CodeStreamClosed) }}
	stop := context.AfterFunc(ctx, ic.kill)
	defer stop()
	if err := dp.serveAllowed(ic, m); err != nil && !isClosedErr(err) && !ic.killed.Load() {
		dp.log.Debug("inbound connection ended", "caller", caller, "destination", hdr.Destination, "err", err)
	}
}

// serveAllowed registers an authorized connection and serves it, raw (L4)
// or request by request (L7), until either side ends.
func (dp *dataPlane) serveAllowed(ic *inboundConn, m *proxyMetrics) error {
	dp.mu.Lock()
	if dp.a.ctx.Err() != nil {
		dp.mu.Unlock()
		ic.kill()
		return nil
	}
	dp.inbound[ic] = struct{}{}
	dp.perPeer[ic.caller]++
	dp.mu.Unlock()
	m.open.Add(1)
	defer func() {
		m.open.Add(-1)
		dp.mu.Lock()
		delete(dp.inbound, ic)
		if dp.perPeer[ic.caller]--; dp.perPeer[ic.caller] <= 0 {
			delete(dp.perPeer, ic.caller)
		}
		dp.mu.Unlock()
	}()
	if ic.l7 {
		return dp.serveHTTP(ic, m)
	}
	return pipe(ic.stream, ic.backend, &m.bytesOut, &m.bytesIn)
}

// reauthorize re-checks every open inbound connection and closes those the
// current certificates and intentions no longer allow, and raw (L4)
// connections whose deciding intention now has HTTP permissions (they
// reconnect and get per-request checks).
func (dp *dataPlane) reauthorize(why string) {
	a := dp.a
	dp.mu.Lock()
	conns := make([]*inboundConn, 0, len(dp.inbound))
	for c := range dp.inbound {
		conns = append(conns, c)
	}
	dp.mu.Unlock()
	closed := 0
	for _, c := range conns {
		reason := ""
		if caps, err := a.trust.capsOf(c.caller); err != nil {
			reason = "the caller's certificate is no longer valid: " + err.Error()
		} else if !caps.MayPublishService(c.hdr.Source) {
			reason = "the caller's certificate no longer allows the source service"
		} else if dec := dp.decide(c.hdr.Source, c.hdr.Destination); !dec.Allowed {
			reason = denyReason(c.hdr, dec)
		} else if !c.l7 && dec.Intention != nil && len(dec.Intention.Permissions) > 0 {
			reason = "the deciding intention now has HTTP permissions"
		}
		if reason == "" {
			continue
		}
		closed++
		dp.metrics(dp.inStats, c.hdr.Destination).closed.Add(1)
		dp.log.Info("closing an open connection", "caller", c.caller, "source", c.hdr.Source, "destination", c.hdr.Destination, "reason", reason)
		c.kill()
	}
	if closed > 0 {
		dp.log.Info("open connections re-authorized", "why", why, "checked", len(conns), "closed", closed)
	}
}

// L7 limits.
const (
	maxL7Header = 64 << 10 // request line and headers of one request
	maxL7Drain  = 1 << 20  // body bytes read off a denied request to keep the connection
)

// limitedReader is an io.LimitedReader whose limit is reset per request
// header and lifted for bodies.
type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("proxy: request header too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// serveHTTP applies an intention's HTTP permissions to each request of an
// HTTP/1.1 connection (keep-alive and pipelining included: requests are
// served one at a time, in order). A denied request gets a 403 and the
// connection goes on; a request that does not parse gets a 400 and the
// connection closes. A 101 Switching Protocols answer turns the rest of
// the connection into a raw pipe.
func (dp *dataPlane) serveHTTP(ic *inboundConn, m *proxyMetrics) error {
	defer ic.stream.Close()
	defer ic.backend.Close()
	lim := &limitedReader{r: ic.stream}
	cr := bufio.NewReaderSize(lim, 16<<10)
	br := bufio.NewReaderSize(ic.backend, 16<<10)
	out := &countWriter{w: ic.stream, n: &m.bytesIn}
	for {
		lim.n = maxL7Header
		req, err := http.ReadRequest(cr)
		if err != nil {
			if errors.Is(err, io.EOF) || ic.killed.Load() {
				return nil
			}
			writeHTTPError(ic.stream, 400, "peerd: "+hdrErr(err), true)
			return err
		}
		lim.n = 1 << 62
		dec := dp.decide(ic.hdr.Source, ic.hdr.Destination)
		ok, why := l7Allowed(ic.hdr, dec, req)
		if !ok {
			m.l7Denies.Add(1)
			dp.log.Info("request denied", "source", ic.hdr.Source, "destination", ic.hdr.Destination, "method", req.Method, "path", req.URL.Path, "reason", why)
			n, _ := io.Copy(io.Discard, io.LimitReader(req.Body, maxL7Drain+1))
			closeAfter := req.Close || n > maxL7Drain
			writeHTTPError(ic.stream, 403, "peerd: "+why, closeAfter)
			if closeAfter {
				return nil
			}
			continue
		}
		if _, ok := req.Header["User-Agent"]; !ok {
			req.Header["User-Agent"] = []string{""} // Request.Write adds Go's otherwise
		}
		cw := &countWriter{w: ic.backend, n: &m.bytesOut}
		if err := req.Write(cw); err != nil {
			writeHTTPError(ic.stream, 502, "peerd: writing to service "+ic.hdr.Destination+": "+err.Error(), true)
			return err
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			writeHTTPError(ic.stream, 502, "peerd: reading from service "+ic.hdr.Destination+": "+err.Error(), true)
			return err
		}
		err = resp.Write(out)
		resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode == http.StatusSwitchingProtocols {
			return dp.upgraded(ic, cr, br, m)
		}
		if req.Close || resp.Close {
			ic.stream.CloseWrite()
			return nil
		}
	}
}

// upgraded pipes the rest of an upgraded connection, bytes already
// buffered first.
func (dp *dataPlane) upgraded(ic *inboundConn, cr, br *bufio.Reader, m *proxyMetrics) error {
	if n := cr.Buffered(); n > 0 {
		b, _ := cr.Peek(n)
		ic.backend.Write(b)
	}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		ic.stream.Write(b)
	}
	return pipe(ic.stream, ic.backend, &m.bytesOut, &m.bytesIn)
}

func hdrErr(err error) string { return "bad HTTP request: " + err.Error() }

// l7Allowed applies the deciding intention to one request: without
// permissions its L4 verdict holds; with permissions the first matching
// one decides and no match is a deny.
func l7Allowed(hdr proxyHeader, dec crdt.Decision, req *http.Request) (bool, string) {
	if !dec.Allowed {
		return false, denyReason(hdr, dec)
	}
	in := dec.Intention
	if in == nil || len(in.Permissions) == 0 {
		return true, ""
	}
	allowed, matched := in.EvaluateHTTP(crdt.HTTPRequest{Method: req.Method, Path: req.URL.Path, Header: requestHeader(req)})
	switch {
	case !matched:
		return false, fmt.Sprintf("%s %s from %s to %s matches no permission of intention %s (default deny)", req.Method, req.URL.Path, hdr.Source, hdr.Destination, in.ID)
	case !allowed:
		return false, fmt.Sprintf("%s %s from %s to %s denied by a permission of intention %s", req.Method, req.URL.Path, hdr.Source, hdr.Destination, in.ID)
	}
	return true, ""
}

// requestHeader looks a header up case-insensitively; Host is the
// request's host.
func requestHeader(req *http.Request) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if strings.EqualFold(name, "Host") {
			return req.Host, req.Host != ""
		}
		v, ok := req.Header[textproto.CanonicalMIMEHeaderKey(name)]
		if !ok || len(v) == 0 {
			return "", false
		}
		return v[0], true
	}
}

// writeHTTPError writes a plain-text HTTP/1.1 error answer.
func writeHTTPError(w io.Writer, code int, msg string, closeConn bool) error {
	body := msg + "\n"
	conn, kind := "keep-alive", "error"
	if closeConn {
		conn = "close"
	}
	if code == http.StatusForbidden {
		kind = "denied"
	}
	_, err := io.WriteString(w, "HTTP/1.1 "+strconv.Itoa(code)+" "+http.StatusText(code)+"\r\n"+
		"Content-Type: text/plain; charset=utf-8\r\n"+
		"Content-Length: "+strconv.Itoa(len(body))+"\r\n"+
		"Connection: "+conn+"\r\n"+
		"X-Peerd-Proxy: "+kind+"\r\n\r\n"+body)
	return err
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n *atomic.Uint64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}
