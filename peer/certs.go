package peer

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/peerd/peerd/identity"
)

// certWarnBefore is how long before this node's certificate expires the
// agent starts warning (every certCheckInterval).
const (
	certWarnBefore    = 7 * 24 * time.Hour
	certCheckInterval = time.Hour
)

// nodeChain returns this node's current encoded delegation chain.
func (a *Agent) nodeChain() []byte {
	if p := a.chain.Load(); p != nil {
		return *p
	}
	return nil
}

// SetNodeChain replaces this node's certificate chain while the agent runs
// (a renewed certificate for the same key, read again by `peerd reload`):
// it must verify for this node's key against the trust roots now. New QUIC
// handshakes present it at once, and the node record carrying it is
// written again, so peers learn it without a reconnect.
func (a *Agent) SetNodeChain(ctx context.Context, chain []byte) error {
	if bytes.Equal(chain, a.nodeChain()) {
		return nil
	}
	caps, err := a.trust.learn(a.pub, chain)
	if err != nil {
		return fmt.Errorf("peer: the new node certificate does not verify for this node's key: %w", err)
	}
	if a.tr != nil {
		if err := a.tr.SetChain(chain); err != nil {
			return fmt.Errorf("peer: %w", err)
		}
	}
	c := bytes.Clone(chain)
	a.chain.Store(&c)
	a.log.Info("node certificate replaced", "name", caps.Name, "not_after", caps.NotAfter)
	if err := a.publishNode(); err != nil {
		return fmt.Errorf("peer: publishing the node record with the new certificate: %w", err)
	}
	return nil
}

// certExpiry returns when this node's certificate stops verifying: zero
// for a root key, an error when the chain no longer verifies.
func (a *Agent) certExpiry() (time.Time, error) {
	caps, err := a.trust.capsOf(a.id)
	if err != nil {
		return time.Time{}, err
	}
	return caps.NotAfter, nil
}

// watchCertExpiry warns, from certWarnBefore ahead, that this node's
// certificate is about to expire: once it has, every peer refuses the node.
func (a *Agent) watchCertExpiry() {
	t := time.NewTicker(certCheckInterval)
	defer t.Stop()
	for {
		exp, err := a.certExpiry()
		switch {
		case err != nil:
			a.log.Error("this node's certificate no longer verifies: peers refuse it; issue a new one and run 'peerd reload'", "err", err)
		case !exp.IsZero() && time.Until(exp) < certWarnBefore:
			a.log.Warn("this node's certificate expires soon: issue a new one (same key) and run 'peerd reload'",
				"not_after", exp.UTC().Format(time.RFC3339), "left", roundLeft(time.Until(exp)))
		}
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// certSummary is this node's certificate state for `peerd info`.
func (a *Agent) certSummary() map[string]string {
	out := map[string]string{"node_id": a.id}
	exp, err := a.certExpiry()
	switch {
	case err != nil:
		out["status"] = "invalid: " + err.Error()
	case exp.IsZero():
		out["status"] = "valid (root key)"
	default:
		out["status"] = "valid"
		out["not_after"] = exp.UTC().Format(time.RFC3339)
	}
	if chain, err := identity.UnmarshalChain(a.nodeChain()); err == nil && len(chain) > 0 {
		out["links"] = fmt.Sprint(len(chain))
		if _, ok := out["not_after"]; !ok {
			// Invalid now: still say when the chain ends (or ended).
			end := chain[0].NotAfter
			for _, c := range chain[1:] {
				if c.NotAfter.Before(end) {
					end = c.NotAfter
				}
			}
			out["not_after"] = end.UTC().Format(time.RFC3339)
		}
	}
	return out
}

// roundLeft rounds the time left before an expiry for a log line: to the
// minute above an hour, to the second below (40 s is not "1m0s").
func roundLeft(d time.Duration) time.Duration {
	if d > time.Hour {
		return d.Round(time.Minute)
	}
	return d.Round(time.Second)
}
