package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
	"github.com/hashicorp/consul/api/watch"
	hclog "github.com/hashicorp/go-hclog"
)

// TestUserEvents runs three agents: an event fired on n1 for n3's service
// only is recorded on n3 and not on n2; a blocking list on n2 wakes for an
// unfiltered event fired on n3; consul/api's Event().Fire and List and its
// watch package (plan type "event") work against peerd; the CLI's event
// and watch -type event too.
// Once n3's key is revoked, its events are rejected.
func TestUserEvents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	n3 := m.start("n3", agentOpts{join: []string{"n1"}})
	expectAllAlive(t, n1, n2, n3)
	c1, c2, c3 := consulClient(t, n1, ""), consulClient(t, n2, ""), consulClient(t, n3, "")
	if err := c3.Agent().ServiceRegister(&consul.AgentServiceRegistration{Name: "api", Tags: []string{"blue"}, Port: 9090}); err != nil {
		t.Fatal(err)
	}
	if err := c2.Agent().ServiceRegister(&consul.AgentServiceRegistration{Name: "web", Port: 8080}); err != nil {
		t.Fatal(err)
	}
	// Every agent has every node record (and so its certificate chain).
	for _, c := range []*consul.Client{c1, c2, c3} {
		waitFor(t, 20*time.Second, func() error {
			nodes, _, err := c.Catalog().Nodes(nil)
			if err != nil {
				return err
			}
			if len(nodes) != 3 {
				return fmt.Errorf("%d nodes in the catalog, want 3", len(nodes))
			}
			return nil
		})
	}

	// A blocking list on n2, from its empty list (index 1).
	_, meta, err := c2.Event().List("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if meta.LastIndex != 1 {
		t.Fatalf("index of an empty event list = %d, want 1", meta.LastIndex)
	}
	type listAnswer struct {
		events []*consul.UserEvent
		index  uint64
		err    error
	}
	blocked := make(chan listAnswer, 1)
	go func() {
		evs, meta, err := c2.Event().List("", &consul.QueryOptions{WaitIndex: 1, WaitTime: 2 * time.Minute})
		a := listAnswer{events: evs, err: err}
		if meta != nil {
			a.index = meta.LastIndex
		}
		blocked <- a
	}()

	// Fired on n1 (through the CLI) for the service "api": only n3 runs it.
	out := m.cli("event", "-http-addr", n1.ip+":8500", "-name", "deploy", "-service", "^api$", "-tag", "blue", "v1.2.3")
	if !strings.HasPrefix(out, "Event ID: ") {
		t.Fatalf("peerd event printed %q", out)
	}
	id := strings.TrimSpace(strings.TrimPrefix(out, "Event ID: "))
	waitFor(t, 20*time.Second, func() error {
		evs, meta, err := c3.Event().List("deploy", nil)
		if err != nil {
			return err
		}
		if len(evs) != 1 || evs[0].ID != id || string(evs[0].Payload) != "v1.2.3" || evs[0].ServiceFilter != "^api$" || evs[0].TagFilter != "blue" {
			return fmt.Errorf("n3 lists %+v, want event %s", evs, id)
		}
		if want := c3.Event().IDToIndex(id); meta.LastIndex != want {
			return fmt.Errorf("n3's index %d, want %d (from the event's ID)", meta.LastIndex, want)
		}
		return nil
	})
	for _, c := range []*consul.Client{c1, c2} {
		if evs, _, err := c.Event().List("deploy", nil); err != nil || len(evs) != 0 {
			t.Fatalf("an agent without the service lists %+v (%v)", evs, err)
		}
	}
	select {
	case a := <-blocked:
		t.Fatalf("n2's blocking list returned for an event not meant for it: %+v %v", a.events, a.err)
	default:
	}

	// The CLI's watch prints n3's events.
	w := m.cli("watch", "-http-addr", n3.ip+":8500", "-type", "event", "-name", "deploy", "-count", "1")
	if !strings.Contains(w, id) {
		t.Fatalf("peerd watch -type event printed:\n%s", w)
	}

	// consul/api's watch plan on n2 sees the next event.
	plan, err := watch.Parse(map[string]any{"type": "event", "name": "restart"})
	if err != nil {
		t.Fatal(err)
	}
	var planMu sync.Mutex
	var planSaw []string
	plan.Handler = func(_ uint64, raw any) {
		evs, _ := raw.([]*consul.UserEvent)
		planMu.Lock()
		defer planMu.Unlock()
		for _, ev := range evs {
			planSaw = append(planSaw, ev.ID+"="+string(ev.Payload))
		}
	}
	plan.Logger = hclog.NewNullLogger()
	planDone := make(chan error, 1)
	go func() { planDone <- plan.RunWithConfig(n2.ip+":8500", &consul.Config{Address: n2.ip + ":8500"}) }()
	t.Cleanup(func() { plan.Stop(); <-planDone })

	// Fired on n3 with consul/api, unfiltered: n2's blocking list wakes.
	id2, _, err := c3.Event().Fire(&consul.UserEvent{Name: "restart", Payload: []byte("now")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var a listAnswer
	select {
	case a = <-blocked:
	case <-time.After(30 * time.Second):
		t.Fatal("n2's blocking list did not return within 30 s of an event fired on n3")
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	if len(a.events) != 1 || a.events[0].ID != id2 || a.events[0].Name != "restart" || string(a.events[0].Payload) != "now" || a.events[0].LTime == 0 {
		t.Fatalf("n2's blocking list answered %+v, want only event %s", a.events, id2)
	}
	if want := c2.Event().IDToIndex(id2); a.index != want {
		t.Fatalf("n2's index %d, want %d", a.index, want)
	}
	waitFor(t, 20*time.Second, func() error {
		planMu.Lock()
		defer planMu.Unlock()
		for _, s := range planSaw {
			if s == id2+"=now" {
				return nil
			}
		}
		return fmt.Errorf("the watch plan saw %v, want %s", planSaw, id2)
	})

	// What Consul refuses, or should.
	for _, tc := range []struct {
		path, body string
		code       int
	}{
		{"/v1/event/fire/big", strings.Repeat("x", 600), http.StatusRequestEntityTooLarge},
		{"/v1/event/fire/x?tag=blue", "", http.StatusBadRequest},
		{"/v1/event/fire/x?node=(", "", http.StatusBadRequest},
		{"/v1/event/fire/", "", http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(http.MethodPut, n1.httpURL(tc.path), strings.NewReader(tc.body))
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("PUT %s: %s %s, want %d", tc.path, resp.Status, b, tc.code)
		}
	}
	if out, err := m.cliErr("event", "-http-addr", n1.ip+":8500", "-name", "x", "-tag", "t"); err == nil || !strings.Contains(out, "Cannot provide tag filter without service filter") {
		t.Errorf("peerd event -tag without -service: %v %q", err, out)
	}

	// n3's key is revoked: its events still arrive by serf gossip, and are
	// rejected.
	rev := filepath.Join(m.dir, "n3.rev")
	m.cli("revoke", "-ca-key", m.root, "-subject", n3.key+".pub", "-out", rev)
	m.cli("revocation", "submit", "-http-addr", n1.ip+":8500", rev)
	expectNotAlive(t, n2, n3.name)
	if _, err := n3.put("/v1/event/fire/revoked", "x"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() error {
		if !strings.Contains(n2.Logs(), "user event rejected") {
			return fmt.Errorf("n2 logged no rejected user event")
		}
		return nil
	})
	for _, c := range []*consul.Client{c1, c2} {
		if evs, _, err := c.Event().List("revoked", nil); err != nil || len(evs) != 0 {
			t.Fatalf("an event of a revoked node was recorded: %+v (%v)", evs, err)
		}
	}
}

func TestWatchNewEvents(t *testing.T) {
	evs := `[{"ID":"b54fe110-7af5-cafc-d1fb-afc8ba432b1c","Name":"a"},{"ID":"00000000-0000-4000-8000-000000000002","Name":"b"}]`
	first := eventIDIndex("b54fe110-7af5-cafc-d1fb-afc8ba432b1c")
	if first != 0xb54fe1107af5cafc^0xd1fbafc8ba432b1c {
		t.Fatalf("eventIDIndex = %#x", first)
	}
	for _, tc := range []struct {
		prev uint64
		want string
	}{
		{0, evs},
		{first, `[{"ID":"00000000-0000-4000-8000-000000000002","Name":"b"}]`},
		{eventIDIndex("00000000-0000-4000-8000-000000000002"), `[]`},
		{12345, evs}, // the previous last event fell out of the ring
	} {
		if got := newEvents([]byte(evs), tc.prev); !bytes.Equal(got, []byte(tc.want)) {
			t.Errorf("after index %s: %s, want %s", strconv.FormatUint(tc.prev, 10), got, tc.want)
		}
	}
	var v any
	if json.Unmarshal(newEvents([]byte(evs), first), &v) != nil {
		t.Fatal("not JSON")
	}
}
