package main

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRegistrationIsAtomic: a service registered on n2 with a critical
// check, then deregistered, must never appear in n1's ?passing answer — it
// would if n1 could apply the service record without its check (or the
// check's removal before the service's). n1 is polled as fast as it
// answers through 10 register/deregister rounds.
func TestRegistrationIsAtomic(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	expectMemberStatus(t, n1, n2.name, memberAlive)

	var seen, polls atomic.Int64
	var bad atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := n1.get("/v1/health/service/crit?passing")
			polls.Add(1)
			if err == nil && strings.Contains(string(b), `"ID":"crit-1"`) {
				seen.Add(1)
				bad.Store(string(b))
			}
		}
	}()
	for i := 0; i < 10; i++ {
		def := `{"ID":"crit-1","Name":"crit","Port":1,"Check":{"CheckID":"crit-ttl","TTL":"60s","Status":"critical"}}`
		if b, err := n2.put("/v1/agent/service/register", def); err != nil {
			t.Fatalf("register: %v %s", err, b)
		}
		waitFor(t, 10*time.Second, func() error {
			b, err := n1.get("/v1/health/service/crit")
			if err != nil || !strings.Contains(string(b), `"ID":"crit-1"`) {
				return fmt.Errorf("n1 does not list crit-1 yet: %v %s", err, b)
			}
			return nil
		})
		if b, err := n2.put("/v1/agent/service/deregister/crit-1", ""); err != nil {
			t.Fatalf("deregister: %v %s", err, b)
		}
		waitFor(t, 10*time.Second, func() error {
			b, err := n1.get("/v1/health/service/crit")
			if err != nil || strings.Contains(string(b), `"ID":"crit-1"`) {
				return fmt.Errorf("n1 still lists crit-1: %v %s", err, b)
			}
			return nil
		})
	}
	close(stop)
	wg.Wait()
	t.Logf("%d polls of n1 during 10 rounds", polls.Load())
	if n := seen.Load(); n > 0 {
		t.Fatalf("n1 listed the critical instance as passing %d times, e.g. %v", n, bad.Load())
	}
}

// TestNoServiceWithoutItsNode: right after n2 joins, n1 registers a
// service; its record may reach n2 (by broadcast) before n1's older node
// record (by anti-entropy). n2 must not list the instance until it knows
// the node — Consul never lists a service without its node.
func TestNoServiceWithoutItsNode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	n1 := m.start("n1", agentOpts{})
	n2 := m.start("n2", agentOpts{join: []string{"n1"}})
	expectMemberStatus(t, n2, n1.name, memberAlive)
	if b, err := n1.put("/v1/agent/service/register", `{"ID":"early-1","Name":"early","Port":1}`); err != nil {
		t.Fatalf("register: %v %s", err, b)
	}
	deadline := time.Now().Add(5 * time.Second)
	listed := false
	for polls := 0; time.Now().Before(deadline); polls++ {
		for _, path := range []string{"/v1/health/service/early", "/v1/catalog/service/early"} {
			b, err := n2.get(path)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), `"Node":""`) {
				t.Fatalf("poll %d: n2 lists early-1 without its node: %s", polls, b)
			}
			listed = listed || strings.Contains(string(b), `"Node":"n1"`)
		}
		if listed {
			return
		}
	}
	t.Fatal("n2 never listed early-1 with its node")
}
