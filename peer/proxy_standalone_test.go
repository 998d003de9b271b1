package peer

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/peerd/peerd/crdt"
)

// holdStream opens a hold on the agent's API and returns the first update
// and a channel of the following ones; cancel ends the hold.
func holdStream(t testing.TB, api, id string) (first HoldUpdate, next <-chan HoldUpdate, cancel func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // before the test server's Close, which waits for this request
	req, _ := http.NewRequestWithContext(ctx, "GET", api+"/v1/agent/peerd/connect/proxy/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("hold %s: %d %s", id, resp.StatusCode, b)
	}
	ch := make(chan HoldUpdate, 16)
	go func() {
		defer resp.Body.Close()
		ReadHoldUpdates(resp.Body, nil, func(u HoldUpdate) error { ch <- u; return nil })
		close(ch)
	}()
	select {
	case first = <-ch:
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("no first hold update")
	}
	return first, ch, cancel
}

// tunnel opens a tunnel for the upstream at bind and returns the raw
// connection after the 101, or the refusal's status and body.
func tunnel(t testing.TB, api, id, bind string, upgrade bool) (net.Conn, *bufio.Reader, int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(api, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	hdr := ""
	if upgrade {
		hdr = "Connection: Upgrade\r\nUpgrade: peerd-tunnel/1\r\n"
	}
	fmt.Fprintf(c, "POST /v1/agent/peerd/connect/tunnel/%s?bind=%s HTTP/1.1\r\nHost: x\r\n%sContent-Length: 0\r\n\r\n", id, bind, hdr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return c, br, resp.StatusCode, ""
	}
	b, _ := io.ReadAll(resp.Body)
	c.Close()
	return nil, nil, resp.StatusCode, string(b)
}

// TestProxyHoldAndTunnel drives the two endpoints of a standalone proxy
// process: holding a service's upstreams takes them from the agent,
// tunnels carry connections, refusals are clear, and ending the hold
// gives the listeners back.
func TestProxyHoldAndTunnel(t *testing.T) {
	if testing.Short() {
		t.Skip("starts agents")
	}
	m := newProxyMesh(t, []string{"web", "web-sidecar-proxy"}, []string{"api"})
	web, apiAgent := m.agents[0], m.agents[1]
	upPort := freePort(t, "127.0.0.1")
	bind := fmt.Sprintf("127.0.0.1:%d", upPort)
	m.putService(apiAgent, crdt.Service{ID: "api1", Name: "api", Port: httpService(t, "api")})
	webSvc := crdt.Service{ID: "web1", Name: "web", Port: 1, Connect: &crdt.Connect{SidecarService: &crdt.Service{
		ID: "web1-sidecar-proxy", Name: "web-sidecar-proxy", Kind: "connect-proxy",
		Proxy: &crdt.Proxy{Upstreams: []crdt.Upstream{{DestinationName: "api", LocalBindPort: upPort}}}}}}
	m.putService(web, webSvc)
	m.putIntention(web, crdt.Intention{ID: "i1", SourceName: "web", DestinationName: "api", Action: crdt.ActionAllow, Version: 1})
	m.waitService("api", 1)
	m.waitIntention("web", "api", 1)
	srv := httptest.NewServer(newAPI(web))
	t.Cleanup(srv.Close)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	waitCall(t, client, "GET", "http://"+bind+"/a", 200, "api GET /a")

	// Refusals before any hold.
	if resp, err := http.Get(srv.URL + "/v1/agent/peerd/connect/proxy/nope"); err != nil || resp.StatusCode != 404 {
		t.Fatalf("hold of an unknown service: %v %v", resp, err)
	}
	if _, _, code, body := tunnel(t, srv.URL, "web1", bind, true); code != 409 || !strings.Contains(body, "no proxy process holds") {
		t.Fatalf("tunnel without a hold: %d %q", code, body)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/v1/agent/peerd/connect/proxy/web1", nil)
	req.RemoteAddr = "192.0.2.7:4000"
	newAPI(web).ServeHTTP(rec, req)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "only from this host") {
		t.Fatalf("hold from a remote address: %d %q", rec.Code, rec.Body)
	}

	// Hold: the agent stops listening and names the upstreams.
	first, next, release := holdStream(t, srv.URL, "web1")
	if len(first.Upstreams) != 1 || first.Upstreams[0].Bind != bind || first.Upstreams[0].DestinationName != "api" || first.Upstreams[0].Source != "web" {
		t.Fatalf("first hold update: %+v", first)
	}
	ln, err := net.Listen("tcp", bind) // the proxy process's listener
	if err != nil {
		t.Fatalf("the agent still listens on %s after the hold: %v", bind, err)
	}
	ln.Close()
	if st := web.connectStats(); !strings.HasPrefix(st["proxy.web1"], "held by 127.0.0.1:") || st["upstreams.web1"] != "api="+bind {
		t.Errorf("info while held: proxy.web1=%q upstreams.web1=%q", st["proxy.web1"], st["upstreams.web1"])
	}
	if ap, ok := web.proxy.upstreamFor("api"); !ok || ap.String() != bind {
		t.Errorf("DNS api.connect.consul while held: %v %v", ap, ok)
	}
	if resp, err := http.Get(srv.URL + "/v1/agent/peerd/connect/proxy/web1"); err != nil || resp.StatusCode != 409 {
		t.Fatalf("second hold: %v %v", resp, err)
	}

	// Tunnels: bad requests are refused, a good one carries HTTP.
	if _, _, code, body := tunnel(t, srv.URL, "web1", bind, false); code != 400 || !strings.Contains(body, "Upgrade: peerd-tunnel/1") {
		t.Errorf("tunnel without Upgrade: %d %q", code, body)
	}
	if _, _, code, _ := tunnel(t, srv.URL, "web1", "127.0.0.1:1", true); code != 404 {
		t.Errorf("tunnel for an undeclared bind: %d", code)
	}
	c, br, _, _ := tunnel(t, srv.URL, "web1", bind, true)
	fmt.Fprintf(c, "GET /b HTTP/1.1\r\nHost: api\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), "api GET /b") {
		t.Fatalf("request through the tunnel: %d %q", resp.StatusCode, b)
	}

	// Removing the upstream sends an update and closes its open tunnel.
	noUp := webSvc
	noUp.Connect = &crdt.Connect{SidecarService: &crdt.Service{ID: "web1-sidecar-proxy", Name: "web-sidecar-proxy", Kind: "connect-proxy", Proxy: &crdt.Proxy{}}}
	m.putService(web, noUp)
	select {
	case u := <-next:
		if len(u.Upstreams) != 0 {
			t.Errorf("update after removing the upstream: %+v", u)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no hold update after the upstream was removed")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Error("tunnel still open after its upstream was removed")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("tunnel not closed 10 s after its upstream was removed")
	}
	c.Close()

	// Ending the hold gives the listener back to the agent.
	m.putService(web, webSvc)
	select {
	case u := <-next:
		if len(u.Upstreams) != 1 {
			t.Fatalf("update after restoring the upstream: %+v", u)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no hold update after the upstream was restored")
	}
	release()
	waitCall(t, client, "GET", "http://"+bind+"/c", 200, "api GET /c")
	if st := web.connectStats(); st["proxy.web1"] != "" {
		t.Errorf("hold still reported after release: %q", st["proxy.web1"])
	}
}

func TestReadHoldUpdates(t *testing.T) {
	var got []HoldUpdate
	beats := 0
	in := "{\"Service\":\"web\",\"Upstreams\":[{\"DestinationName\":\"api\",\"Bind\":\"127.0.0.1:9191\",\"Source\":\"web\"}]}\n\n\n{\"Service\":\"web\",\"Upstreams\":[]}\n"
	err := ReadHoldUpdates(strings.NewReader(in), func() { beats++ }, func(u HoldUpdate) error { got = append(got, u); return nil })
	if !errors.Is(err, io.EOF) || len(got) != 2 || beats != 4 || got[0].Upstreams[0].Bind != "127.0.0.1:9191" {
		t.Fatalf("err %v, %d updates %+v, %d beats", err, len(got), got, beats)
	}
	for _, bad := range []string{"{", "[1]\n", `{"Upstreams":"x"}` + "\n", strings.Repeat("x", 2<<20)} {
		if err := ReadHoldUpdates(strings.NewReader(bad), nil, func(HoldUpdate) error { return nil }); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("%.20q: err %v, want a decoding error", bad, err)
		}
	}
	stop := errors.New("stop")
	if err := ReadHoldUpdates(strings.NewReader(in), nil, func(HoldUpdate) error { return stop }); !errors.Is(err, stop) {
		t.Errorf("fn's error not returned: %v", err)
	}
}

// FuzzHoldUpdates: the proxy process's decoder of the agent's hold stream
// never panics, and every update it accepts survives a JSON round trip.
func FuzzHoldUpdates(f *testing.F) {
	f.Add([]byte("{\"Service\":\"web\",\"Upstreams\":[{\"DestinationName\":\"api\",\"Bind\":\"127.0.0.1:9191\",\"Source\":\"web\"}]}\n\n"))
	f.Add([]byte("\n{\"Service\":\"\"}\n{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ReadHoldUpdates(strings.NewReader(string(b)), nil, func(u HoldUpdate) error {
			enc, err := json.Marshal(u)
			if err != nil {
				t.Fatal(err)
			}
			var back HoldUpdate
			if err := json.Unmarshal(enc, &back); err != nil {
				t.Fatalf("re-decoding %s: %v", enc, err)
			}
			return nil
		})
	})
}
