package resolver

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestConcurrentQueries runs many clients over UDP and TCP at once while the
// Source changes, to let the race detector look at the pooled scratch, the
// target cache, the batched UDP readers and the counters.
func TestConcurrentQueries(t *testing.T) {
	src := testSource()
	s := startServer(t, Config{}, src)
	stop := make(chan struct{})
	var mutator sync.WaitGroup
	mutator.Add(1)
	go func() {
		defer mutator.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			insts := webInstances(1 + i%12)
			insts[0].Node = fmt.Sprintf("churn-%d", i%50)
			insts[0].ServiceAddress = netip.AddrFrom4([4]byte{192, 168, 0, byte(i)})
			src.mu.Lock()
			src.services["web"] = insts
			src.mu.Unlock()
		}
	}()

	questions := []struct {
		name  string
		qtype uint16
	}{
		{"web.service.consul.", dns.TypeA},
		{"_web._tcp.service.consul.", dns.TypeSRV},
		{"v1.web.service.consul.", dns.TypeSRV},
		{"node-0.node.consul.", dns.TypeANY},
		{"nope.service.consul.", dns.TypeA},
		{"example.com.", dns.TypeA},
	}
	const clients, perClient = 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			network := "udp"
			if c%4 == 3 {
				network = "tcp"
			}
			cl := dns.Client{Net: network, Timeout: 5 * time.Second}
			for i := range perClient {
				q := questions[(c+i)%len(questions)]
				m := question(q.name, q.qtype, uint16(512+(i%3)*1000))
				resp, _, err := cl.Exchange(m, s.Addr().String())
				if err != nil {
					errs <- fmt.Errorf("%s %s: %w", network, q.name, err)
					return
				}
				if resp.Id != m.Id || len(resp.Question) != 1 || resp.Question[0].Name != q.name {
					errs <- fmt.Errorf("%s %s: mismatched response %v", network, q.name, resp)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	mutator.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := s.Stats(); st.Queries < clients*perClient {
		t.Errorf("stats: %d queries, want ≥ %d", st.Queries, clients*perClient)
	}
}
