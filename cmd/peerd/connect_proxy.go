package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerd/peerd/peer"
)

// `peerd connect proxy -sidecar-for ID`: the sidecar as its own process,
// for users who want a process per service (docs/DATAPLANE.md "A process
// per service"). It holds the service's upstreams on the local agent
// (GET /v1/agent/peerd/connect/proxy/ID, a streamed answer open for the
// process's life), listens on them itself, and carries every accepted
// connection to the agent through a tunnel (an HTTP upgrade of a new API
// connection), where routing, authorization and the QUIC stream are the
// agent's. When the process exits, the agent listens again.

const (
	// holdSilence is how long the hold stream may stay silent (the agent
	// sends a heartbeat every 10 s) before the process reconnects.
	holdSilence = 30 * time.Second
	// holdRetryMax caps the pause between attempts to hold again after
	// the agent went away.
	holdRetryMax = 5 * time.Second
	// tunnelDialTimeout bounds opening a tunnel to the agent.
	tunnelDialTimeout = 3 * time.Second
)

func runConnectProxy(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "connect proxy", "connect proxy -sidecar-for ID [-http-addr ADDR] [-token TOKEN]")
	addr := fs.String("http-addr", defaultHTTPAddr(c), "agent HTTP address")
	token := fs.String("token", connectToken(c), "API token")
	id := fs.String("sidecar-for", "", "local service ID whose upstreams this process serves")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *id == "" {
		return usageErrorf("connect proxy: -sidecar-for is required")
	}
	cl, err := newAPIClient(*addr)
	if err != nil {
		return usageErrorf("%v", err)
	}
	u, _ := url.Parse(cl.base)
	if u.Scheme != "http" {
		return usageErrorf("connect proxy: the agent's API must be plain http on this host, got %s", cl.base)
	}
	log, err := newLogger(c.stderr, *logLevel, false)
	if err != nil {
		return usageErrorf("connect proxy: %v", err)
	}
	p := &sidecarProxy{
		base: cl.base, host: u.Host, token: *token, id: *id, out: c.stdout,
		log: log.With("component", "connect-proxy", "service", *id), listeners: map[string]*sidecarListener{},
	}
	return p.run(ctx)
}

// sidecarProxy is the process's state.
type sidecarProxy struct {
	base, host string // agent API
	token      string
	id         string
	out        io.Writer
	log        *slog.Logger

	mu        sync.Mutex
	listeners map[string]*sidecarListener // by bind address; guarded by mu
	wg        sync.WaitGroup
}

// sidecarListener is one upstream port of the process.
type sidecarListener struct {
	bind string
	dest atomic.Pointer[string] // destination name, for logs
	ln   net.Listener           // nil while the port could not be bound

	mu    sync.Mutex
	conns map[net.Conn]struct{} // app and tunnel connections; guarded by mu
}

// run holds the upstreams until ctx ends, holding again after the agent
// went away. A refusal on the first attempt (unknown service, another
// proxy holds them, not allowed) is returned: the command is wrong.
func (p *sidecarProxy) run(ctx context.Context) error {
	defer p.closeAll()
	pause := 250 * time.Millisecond
	for attempt := 0; ; attempt++ {
		held, err := p.holdOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var refused *holdRefused
		if attempt == 0 && errors.As(err, &refused) {
			return fmt.Errorf("connect proxy: %w", err)
		}
		if held {
			pause = 250 * time.Millisecond
		}
		p.log.Warn("lost the agent's hold stream; holding again", "agent", p.base, "retry_in", pause, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pause):
		}
		pause = min(2*pause, holdRetryMax)
	}
}

// holdRefused is a hold request the agent answered with an error status.
type holdRefused struct {
	status int
	msg    string
}

func (e *holdRefused) Error() string {
	return fmt.Sprintf("the agent refused to hand over the upstreams (%d): %s", e.status, e.msg)
}

// holdOnce opens the hold stream and applies its updates until it ends.
// held reports whether the agent accepted the hold.
func (p *sidecarProxy) holdOnce(ctx context.Context) (held bool, err error) {
	// On shutdown the listeners close before the hold ends, so that the
	// agent finds the ports free when it binds them again.
	reqCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	stop := context.AfterFunc(ctx, func() { p.closeAll(); cancel() })
	defer stop()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, p.base+"/v1/agent/peerd/connect/proxy/"+url.PathEscape(p.id), nil)
	if err != nil {
		return false, err
	}
	if p.token != "" {
		req.Header.Set("X-Consul-Token", p.token)
	}
	// No client timeout: the answer is open for the process's life; the
	// silence watchdog below replaces it.
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return false, &holdRefused{status: resp.StatusCode, msg: strings.TrimSpace(string(b))}
	}
	watchdog := time.AfterFunc(holdSilence, cancel)
	defer watchdog.Stop()
	err = peer.ReadHoldUpdates(resp.Body, func() {
		watchdog.Reset(holdSilence)
		p.retryUnbound()
	}, func(u peer.HoldUpdate) error {
		p.apply(u)
		return nil
	})
	return true, err
}

// apply makes the process's listeners match an update: new upstreams are
// bound, gone ones closed with their connections, changed ones
// re-pointed.
func (p *sidecarProxy) apply(u peer.HoldUpdate) {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[string]string{}
	for _, up := range u.Upstreams {
		want[up.Bind] = up.DestinationName
	}
	for bind, l := range p.listeners {
		if _, ok := want[bind]; !ok {
			l.close()
			delete(p.listeners, bind)
			p.log.Info("upstream listener closed", "bind", bind)
		}
	}
	var lines []string
	for bind, dest := range want {
		lines = append(lines, fmt.Sprintf("    %s -> %s", bind, dest))
		if l := p.listeners[bind]; l != nil {
			l.dest.Store(&dest)
			continue
		}
		l := &sidecarListener{bind: bind, conns: map[net.Conn]struct{}{}}
		l.dest.Store(&dest)
		p.listeners[bind] = l
		p.bindLocked(l)
	}
	sort.Strings(lines)
	if len(lines) == 0 {
		fmt.Fprintf(p.out, "==> peerd connect proxy for service %s (agent %s): the service declares no upstreams "+
			"(connect.sidecar_service.proxy.upstreams, or Proxy.Upstreams of a connect-proxy for it); waiting for some\n", p.id, p.base)
		return
	}
	fmt.Fprintf(p.out, "==> peerd connect proxy for service %s (agent %s); upstreams:\n%s\n", p.id, p.base, strings.Join(lines, "\n"))
}

// bindLocked binds l's port; failures are retried on the next heartbeat.
func (p *sidecarProxy) bindLocked(l *sidecarListener) {
	ln, err := net.Listen("tcp", l.bind)
	if err != nil {
		p.log.Warn("upstream listener not bound; retrying", "bind", l.bind, "err", err)
		return
	}
	l.ln = ln
	p.log.Info("upstream listener", "bind", l.bind, "destination", *l.dest.Load())
	p.wg.Add(1)
	go func() { defer p.wg.Done(); p.acceptLoop(l, ln) }()
}

func (p *sidecarProxy) retryUnbound() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, l := range p.listeners {
		if l.ln == nil {
			p.bindLocked(l)
		}
	}
}

func (p *sidecarProxy) closeAll() {
	p.mu.Lock()
	for bind, l := range p.listeners {
		l.close()
		delete(p.listeners, bind)
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (l *sidecarListener) close() {
	if l.ln != nil {
		l.ln.Close()
	}
	l.mu.Lock()
	for c := range l.conns {
		c.Close()
	}
	l.conns = nil
	l.mu.Unlock()
}

// track records c as open on l; false once l is closed.
func (l *sidecarListener) track(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conns == nil {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *sidecarListener) untrack(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

func (p *sidecarProxy) acceptLoop(l *sidecarListener, ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				p.log.Warn("upstream accept", "bind", l.bind, "err", err)
			}
			return
		}
		if !l.track(c) {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer l.untrack(c)
			defer c.Close()
			app := c.(*net.TCPConn)
			if err := p.carry(l, app); err != nil {
				p.log.Warn("upstream connection failed", "bind", l.bind, "destination", *l.dest.Load(), "err", err)
				var ne *notCarried
				if errors.As(err, &ne) {
					peer.RefuseClient(app, ne.status, "peerd connect proxy: "+ne.Error())
				}
			}
		}()
	}
}

// carry opens a tunnel to the agent for one app connection and pipes.
func (p *sidecarProxy) carry(l *sidecarListener, app *net.TCPConn) error {
	d := net.Dialer{Timeout: tunnelDialTimeout}
	c, err := d.Dial("tcp", p.host)
	if err != nil {
		return &notCarried{http.StatusServiceUnavailable, fmt.Errorf("cannot reach the agent at %s: %w", p.host, err)}
	}
	agent := c.(*net.TCPConn)
	if !l.track(agent) {
		agent.Close()
		return nil
	}
	defer l.untrack(agent)
	defer agent.Close()
	path := "/v1/agent/peerd/connect/tunnel/" + url.PathEscape(p.id) + "?bind=" + url.QueryEscape(l.bind)
	req := "POST " + path + " HTTP/1.1\r\nHost: " + p.host + "\r\nConnection: Upgrade\r\nUpgrade: peerd-tunnel/1\r\nContent-Length: 0\r\n"
	if p.token != "" {
		req += "X-Consul-Token: " + p.token + "\r\n"
	}
	agent.SetDeadline(time.Now().Add(tunnelDialTimeout))
	if _, err := io.WriteString(agent, req+"\r\n"); err != nil {
		return &notCarried{http.StatusServiceUnavailable, fmt.Errorf("tunnel request: %w", err)}
	}
	br := bufio.NewReader(agent)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return &notCarried{http.StatusServiceUnavailable, fmt.Errorf("tunnel answer: %w", err)}
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		resp.Body.Close()
		return &notCarried{http.StatusBadGateway, fmt.Errorf("the agent refused the tunnel (%d): %s", resp.StatusCode, strings.TrimSpace(string(b)))}
	}
	agent.SetDeadline(time.Time{})
	var fromAgent io.Reader = agent
	if br.Buffered() > 0 {
		fromAgent = br
	}
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(agent, app)
		agent.CloseWrite()
		errc <- err
	}()
	_, err = io.Copy(app, fromAgent)
	app.CloseWrite()
	if err != nil {
		// The agent side failed: end the app's side too.
		app.Close()
		agent.Close()
	}
	if err2 := <-errc; err == nil {
		err = err2
	}
	if isClosedConnErr(err) {
		return nil
	}
	return err
}

// notCarried is a connection refused before any byte was carried; the app
// is answered with status when it speaks HTTP.
type notCarried struct {
	status int
	err    error
}

func (e *notCarried) Error() string { return e.err.Error() }
func (e *notCarried) Unwrap() error { return e.err }

// isClosedConnErr reports errors that only say a side was closed.
func isClosedConnErr(err error) bool {
	return err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) ||
		strings.Contains(err.Error(), "connection reset by peer") || strings.Contains(err.Error(), "broken pipe")
}
