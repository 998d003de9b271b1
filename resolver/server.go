package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"syscall"

	"github.com/miekg/dns"
)

// Server is the DNS stub: a miekg/dns UDP and TCP server whose handler
// answers the domain from a Source and forwards other names to the
// recursors. Build it with New, start it with Start, stop it with Close.
// ServeDNS may also be used on its own (tests, another miekg/dns server).
type Server struct {
	cfg     *settings
	src     Source
	targets *targetNames
	soaNS   string
	soaMbox string
	stats   counters

	// ctx bounds recursor exchanges; cancel ends them at Close.
	ctx    context.Context
	cancel context.CancelFunc

	mu      sync.Mutex // guards the fields below
	started bool
	closed  bool
	udp     *dns.Server // miekg's UDP server, on wildcard addresses only
	udpFast *udpServer  // the UDP path on a specific address (udp.go)
	tcp     *dns.Server
	addr    netip.AddrPort
	wg      sync.WaitGroup // serve goroutines
}

// New validates cfg and builds a Server answering from src. It opens no
// socket.
func New(cfg Config, src Source) (*Server, error) {
	if src == nil {
		return nil, errors.New("resolver: nil source")
	}
	st, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{
		cfg:     st,
		src:     src,
		targets: newTargetNames(st),
		soaNS:   "ns." + st.Domain,
		soaMbox: "hostmaster." + st.Domain,
		ctx:     ctx,
		cancel:  cancel,
	}, nil
}

// Start binds the UDP and TCP listeners on Config.Addr (the same port for
// both; with port 0 a free one) and serves in the background until Close.
// ctx bounds only the start itself. Start may be called once.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("resolver: start after close")
	}
	if s.started {
		return errors.New("resolver: already started")
	}
	pc, ln, err := listen(ctx, s.cfg.Addr)
	if err != nil {
		return err
	}
	s.started = true
	s.addr = pc.LocalAddr().(*net.UDPAddr).AddrPort()
	var up []chan struct{}
	servers := []*dns.Server{}
	if uc, ok := pc.(*net.UDPConn); ok && !s.addr.Addr().IsUnspecified() && !s.cfg.miekgUDP {
		s.udpFast = &udpServer{s: s, conn: uc, sem: make(chan struct{}, maxAsyncRecursions)}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.udpFast.serve()
		}()
	} else {
		c := make(chan struct{})
		up = append(up, c)
		s.udp = &dns.Server{
			PacketConn:        pc,
			Handler:           s,
			UDPSize:           udpReadBuffer,
			NotifyStartedFunc: func() { close(c) },
		}
		servers = append(servers, s.udp)
	}
	c := make(chan struct{})
	up = append(up, c)
	s.tcp = &dns.Server{
		Listener:          ln,
		Handler:           s,
		NotifyStartedFunc: func() { close(c) },
	}
	servers = append(servers, s.tcp)
	for _, srv := range servers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := srv.ActivateAndServe(); err != nil {
				s.cfg.Logger.Error("resolver: serve", "net", srv.Net, "err", err)
			}
		}()
	}
	// Wait until miekg's loops run, so that Close can shut them down.
	for _, c := range up {
		<-c
	}
	return nil
}

// listen binds UDP and then TCP on the same port. With port 0 the kernel
// picks the UDP port; if that port is taken for TCP, it tries again.
func listen(ctx context.Context, addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("resolver: addr %q: %w", addr, err)
	}
	var lc net.ListenConfig
	for attempt := 0; ; attempt++ {
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("resolver: listen udp %s: %w", addr, err)
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := lc.Listen(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if port != "0" || attempt == 10 || !errors.Is(err, syscall.EADDRINUSE) {
			return nil, nil, fmt.Errorf("resolver: listen tcp %s: %w", addr, err)
		}
	}
}

// Addr returns the bound address (UDP and TCP share the port); the zero
// value before Start.
func (s *Server) Addr() netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats { return s.stats.snapshot() }

// Close stops the listeners, cancels recursor exchanges in flight and waits
// for every goroutine the server started (including in-flight handlers).
// It is idempotent and safe to call without Start.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	udp, tcp, fast := s.udp, s.tcp, s.udpFast
	s.mu.Unlock()

	s.cancel()
	var errs []error
	if fast != nil {
		fast.closed.Store(true)
		if err := fast.conn.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, srv := range []*dns.Server{udp, tcp} {
		if srv == nil {
			continue
		}
		// Shutdown closes the listener and waits for the serve loop and
		// its handlers.
		if err := srv.Shutdown(); err != nil {
			errs = append(errs, err)
		}
	}
	s.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("resolver: close: %w", err)
	}
	return nil
}
