package peer

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/crdt"
)

// The data plane carries any TCP protocol (docs/DATAPLANE.md): these tests
// push a server-speaks-first line protocol with half-close, HTTP/2 with
// prior knowledge (h2c) and a WebSocket-style upgrade through two
// in-process agents.

// lineServer is a server that speaks first, like SMTP or MySQL: it sends
// a greeting, echoes each line in upper case, and on the client's EOF says
// "bye" and closes.
func lineServer(t testing.TB) int {
	return tcpService(t, func(c net.Conn) {
		fmt.Fprintf(c, "220 lines ready\r\n")
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			fmt.Fprintf(c, "%s\r\n", strings.ToUpper(sc.Text()))
		}
		fmt.Fprintf(c, "221 bye\r\n")
	})
}

// upgradeServer answers an HTTP/1.1 request carrying "Upgrade: websocket"
// with 101 and then echoes raw bytes; other requests get 200 "plain".
func upgradeServer(t testing.TB) int {
	return tcpService(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain")
				continue
			}
			fmt.Fprintf(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			io.Copy(c, br) // raw echo until the client closes
			return
		}
	})
}

func TestProxyProtocols(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agents")
	}
	m := newProxyMesh(t, []string{"web", "web-sidecar-proxy"}, []string{"lines", "h2", "ws"})
	web, srv := m.agents[0], m.agents[1]
	h2 := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.Method, r.URL.Path)
	}), Protocols: &http.Protocols{}}
	h2.Protocols.SetUnencryptedHTTP2(true)
	h2ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go h2.Serve(h2ln)
	t.Cleanup(func() { h2.Close() })
	m.putService(srv, crdt.Service{ID: "lines1", Name: "lines", Port: lineServer(t)})
	m.putService(srv, crdt.Service{ID: "h21", Name: "h2", Port: h2ln.Addr().(*net.TCPAddr).Port})
	m.putService(srv, crdt.Service{ID: "ws1", Name: "ws", Port: upgradeServer(t)})
	// Three different free ports: freePort closes its probe, so two calls
	// can return the same port.
	ports := map[string]int{}
	taken := map[int]bool{}
	for _, name := range []string{"lines", "h2", "ws"} {
		p := freePort(t, "127.0.0.1")
		for taken[p] {
			p = freePort(t, "127.0.0.1")
		}
		taken[p], ports[name] = true, p
	}
	var ups []crdt.Upstream
	for name, p := range ports {
		ups = append(ups, crdt.Upstream{DestinationName: name, LocalBindPort: p})
		// ws gets an L7 intention: the upgrade request is inspected, the
		// rest of the connection is a raw pipe.
		in := crdt.Intention{ID: "i-" + name, SourceName: "web", DestinationName: name, Action: crdt.ActionAllow, Version: 1}
		if name == "ws" {
			in.Action = ""
			in.Permissions = []crdt.IntentionPermission{{Action: crdt.ActionAllow, HTTP: &crdt.IntentionHTTPPermission{PathPrefix: "/ws"}}}
		}
		m.putIntention(web, in)
	}
	m.putService(web, crdt.Service{ID: "web1", Name: "web", Port: 1, Connect: &crdt.Connect{SidecarService: &crdt.Service{
		ID: "web1-sidecar-proxy", Name: "web-sidecar-proxy", Kind: "connect-proxy", Proxy: &crdt.Proxy{Upstreams: ups}}}})
	for name := range ports {
		m.waitService(name, 1)
		m.waitIntention("web", name, 1)
	}
	addr := func(name string) string { return fmt.Sprintf("127.0.0.1:%d", ports[name]) }
	// A raw TCP client cannot retry as the HTTP ones in proxy_test.go do,
	// and a refused stream is just a closed connection: wait until srv
	// knows web's registration (it checks that the calling node runs the
	// source service) and web's data plane would route to every
	// destination (known, its node alive, its QUIC address known).
	m.waitService("web", 1)
	m.waitAll("destinations routable", func(a *Agent) bool {
		if a != web {
			return true
		}
		for name := range ports {
			if len(web.proxy.candidates(name)) == 0 {
				return false
			}
		}
		return true
	})
	// The agent binds upstream listeners when it reconciles, just after
	// the registration.
	m.waitAll("upstream listeners bound", func(a *Agent) bool {
		if a != web {
			return true
		}
		st := web.connectStats()
		for name := range ports {
			if !strings.HasSuffix(st["listener."+addr(name)], "(listening)") {
				return false
			}
		}
		return true
	})

	t.Run("server-first-half-close", func(t *testing.T) {
		c, err := net.Dial("tcp", addr("lines"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		// The greeting arrives before the client sends a byte.
		if l, err := br.ReadString('\n'); err != nil || l != "220 lines ready\r\n" {
			t.Fatalf("greeting: %q %v", l, err)
		}
		fmt.Fprintf(c, "hello\r\nworld\r\n")
		for _, want := range []string{"HELLO\r\n", "WORLD\r\n"} {
			if l, err := br.ReadString('\n'); err != nil || l != want {
				t.Fatalf("echo: %q %v, want %q", l, err, want)
			}
		}
		// Half-close: the server sees EOF, answers, and closes.
		c.(*net.TCPConn).CloseWrite()
		rest, err := io.ReadAll(br)
		if err != nil || string(rest) != "221 bye\r\n" {
			t.Fatalf("after half-close: %q %v", rest, err)
		}
	})

	t.Run("h2c", func(t *testing.T) {
		tr := &http.Transport{Protocols: &http.Protocols{}}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for _, p := range []string{"/a", "/b"} {
			resp, err := cl.Get("http://" + addr("h2") + p)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || string(b) != "HTTP/2.0 GET "+p {
				t.Fatalf("h2c %s: %s %q", p, resp.Proto, b)
			}
		}
	})

	t.Run("websocket-upgrade-under-L7", func(t *testing.T) {
		c, err := net.Dial("tcp", addr("ws"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		// A path outside the permission is refused per request.
		fmt.Fprintf(c, "GET /other HTTP/1.1\r\nHost: ws\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("GET /other: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: ws\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		resp, err = http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		// After the 101 the bytes are not HTTP and pass untouched.
		frame := "\x81\x05hello not-http \x00\xff"
		io.WriteString(c, frame)
		got := make([]byte, len(frame))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != frame {
			t.Fatalf("raw bytes after the upgrade: %q %v", got, err)
		}
	})
}
