package peer

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/peerd/peerd/gossip"
)

// replicaSync adapts the replica to gossip.Replica: heads travel as a CBOR
// version vector, missing state as encoded crdt deltas.
type replicaSync struct{ a *Agent }

var _ gossip.Replica = replicaSync{}

func (r replicaSync) Digest() []byte {
	d := r.a.replica.Digest()
	return d[:]
}

func (r replicaSync) Heads() []byte { return r.a.replica.EncodeHeads() }

func (r replicaSync) Missing(remoteHeads []byte, maxBytes int) ([][]byte, error) {
	return r.a.replica.MissingEncoded(remoteHeads, maxBytes)
}

func (r replicaSync) Apply(from string, batch []byte) error {
	_, err := r.a.mergeRemote(batch)
	return err
}

func (a *Agent) startAntiEntropy() error {
	ae, err := gossip.NewAntiEntropy(gossip.AntiEntropyConfig{
		Replica: replicaSync{a},
		Dialer: gossip.DialerFunc(func(ctx context.Context, to string, req []byte) ([]byte, error) {
			return a.roundTrip(ctx, to, syncExchange, req)
		}),
		Peers:    a.currentPeers,
		Failed:   a.failedPeers,
		Distance: a.distance,
		Interval: a.cfg.AntiEntropyInterval,
		Logger:   a.log.With("component", "anti-entropy"),
	})
	if err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	a.ae = ae
	ae.Start()
	return nil
}

// peerSet holds the admitted, alive peers' node IDs.
type peerSet struct{ v atomic.Pointer[[]string] }

func (a *Agent) currentPeers() []string {
	p := a.peers.v.Load()
	if p == nil {
		return nil
	}
	return *p
}

// failedPeers returns the trusted members serf has declared failed (not
// those that left): anti-entropy tries one of them now and then, so the
// two sides of a healed partition repair each other before membership has
// re-merged. Revoked or untrusted nodes are never tried.
func (a *Agent) failedPeers() []string {
	m := a.membership()
	if m == nil {
		return nil
	}
	var ids []string
	for _, mem := range m.Members() {
		id := mem.Tags[tagID]
		if mem.Status != gossip.StatusFailed || id == "" || id == a.id || !a.trust.admitted(id) {
			continue
		}
		ids = append(ids, id)
	}
	return ids
}

func (a *Agent) distance(id string) (d0 time.Duration, ok bool) {
	m := a.membership()
	if m == nil {
		return 0, false
	}
	name, ok := a.nameOf(id)
	if !ok {
		return 0, false
	}
	return m.Distance(name)
}

func (a *Agent) antiEntropyStats() map[string]string {
	s := a.ae.Stats()
	return map[string]string{
		"rounds":          fmt.Sprint(s.Rounds),
		"exchanges":       fmt.Sprint(s.Exchanges),
		"digests_equal":   fmt.Sprint(s.DigestsEqual),
		"digests_differ":  fmt.Sprint(s.DigestsDiffer),
		"batches_pulled":  fmt.Sprint(s.BatchesPulled),
		"bytes_pulled":    fmt.Sprint(s.BytesPulled),
		"batches_pushed":  fmt.Sprint(s.BatchesPushed),
		"bytes_pushed":    fmt.Sprint(s.BytesPushed),
		"apply_errors":    fmt.Sprint(s.ApplyErrors),
		"exchange_errors": fmt.Sprint(s.ExchangeErrors),
		"served":          fmt.Sprint(s.Served),
		"failed_tried":    fmt.Sprint(s.FailedTried),
		"failed_reached":  fmt.Sprint(s.FailedReached),
	}
}
