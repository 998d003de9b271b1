package peer

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// maxRevocationBody bounds a revocation submitted over HTTP.
const maxRevocationBody = 64 << 10

// SubmitRevocation verifies a signed revocation and writes it to the
// replica, which spreads it like any record; every agent that merges it
// applies it at once (see watchRevocations).
func (a *Agent) SubmitRevocation(ctx context.Context, signed []byte) error {
	if _, err := identity.UnmarshalRevocation(signed); err != nil {
		return err
	}
	err := a.commit(ctx, func(now time.Time) (*crdt.Delta, error) {
		return a.replica.AddRevocation(signed, a.trust, now)
	})
	if err != nil {
		return err
	}
	a.enforceRevocations()
	return nil
}

// watchRevocations cuts off revoked peers whenever the replica's set of
// revocations changes, whether the revocation was written here or merged
// from another peer.
func (a *Agent) watchRevocations() {
	for {
		_, ch := a.replica.WatchIndex(crdt.ScopeRevocations)
		select {
		case <-a.ctx.Done():
			return
		case <-ch:
		}
		a.enforceRevocations()
	}
}

// enforceRevocations closes the QUIC connections of peers that are no longer
// trusted and takes them out of dissemination and anti-entropy.
func (a *Agent) enforceRevocations() {
	for _, p := range a.tr.Peers() {
		id := identity.NodeID(p.Key)
		if !a.trust.admitted(id) {
			a.log.Warn("peer no longer trusted; closing its connection", "peer", id)
			a.tr.ClosePeer(p.Key)
		}
	}
	if a.members != nil {
		a.members.Reevaluate()
		a.refreshPeers()
	}
}

// agentRevoke serves PUT /v1/agent/peerd/revoke: the body is a revocation
// made with `peerd revoke`.
func (s *apiServer) agentRevoke(w http.ResponseWriter, r *http.Request, _ string) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRevocationBody+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "reading body: %v", err)
	}
	if len(body) > maxRevocationBody {
		return errorf(http.StatusRequestEntityTooLarge, "revocation larger than %d bytes", maxRevocationBody)
	}
	if err := s.a.SubmitRevocation(r.Context(), body); err != nil {
		return errorf(http.StatusBadRequest, "revocation refused: %v", err)
	}
	return writeJSON(w, true)
}

// revocationSummary lists the revoked keys, for `peerd info`.
func (a *Agent) revocationSummary() string {
	n := len(a.replica.Revocations())
	return fmt.Sprint(n)
}
