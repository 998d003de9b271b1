package peer

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/peerd/peerd/crdt"
)

// The Connect CA endpoints: /v1/agent/connect/ca/{roots,leaf/:service}
// and /v1/connect/ca/{roots,configuration} (docs/COMPATIBILITY.md).

// apiCARoots is Consul's CARoots shape.
type apiCARoots struct {
	ActiveRootID string
	TrustDomain  string
	Roots        []apiCARoot
}

// apiCARoot is Consul's CARoot shape.
type apiCARoot struct {
	ID                  string
	Name                string
	SerialNumber        uint64
	SigningKeyID        string
	ExternalTrustDomain string
	NotBefore           time.Time
	NotAfter            time.Time
	RootCert            string
	IntermediateCerts   []string
	Active              bool
	RotatedOutAt        time.Time
	PrivateKeyType      string
	PrivateKeyBits      int
	CreateIndex         uint64
	ModifyIndex         uint64
}

// connectCA routes the Connect CA endpoints.
func (s *apiServer) connectCA(w http.ResponseWriter, r *http.Request, rest string) error {
	agent := strings.HasPrefix(r.URL.Path, "/v1/agent/")
	if r.Method != http.MethodGet && (agent || rest != "configuration") {
		return errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path)
	}
	switch {
	case rest == "roots":
		return s.connectRoots(w, r)
	case agent && strings.HasPrefix(rest, "leaf/"):
		return s.connectLeaf(w, r, strings.TrimPrefix(rest, "leaf/"))
	case !agent && rest == "configuration":
		return s.connectCAConfig(w, r)
	}
	return errorf(http.StatusNotFound, "Invalid URL path: %s is not a Connect CA endpoint (roots, leaf/:service, configuration)", r.URL.Path)
}

// connectRootsIndex is the roots answer's index and the channels closed
// on its next change: the node records, the trust statements
// (revocations, rotations) and membership.
func (a *Agent) connectRootsIndex() (uint64, []<-chan struct{}) {
	e, mch := a.local.members.current()
	ni, nch := a.replica.WatchIndex(crdt.ScopeNodes)
	ri, rch := a.replica.WatchIndex(crdt.ScopeRevocations)
	return ni + ri + e, []<-chan struct{}{nch, rch, mch}
}

// blockOn is a Consul blocking query over an index that current computes
// with the channels closed on its next change. It returns the answer's
// index.
func blockOn(r *http.Request, current func() (uint64, []<-chan struct{})) (uint64, error) {
	minIndex, wait, err := blockingParams(r)
	if err != nil {
		return 0, err
	}
	idx, chs := current()
	if minIndex == 0 || idx != minIndex {
		return idx, nil
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait+jitterFor(wait))
	defer cancel()
	for {
		waitAny(ctx, chs)
		idx, chs = current()
		if idx != minIndex || ctx.Err() != nil {
			return idx, nil
		}
	}
}

// waitAny returns when one of chs is closed or ctx ends.
func waitAny(ctx context.Context, chs []<-chan struct{}) {
	done := make(chan struct{})
	defer close(done)
	fired := make(chan struct{}, len(chs))
	for _, ch := range chs[1:] {
		go func() {
			select {
			case <-ch:
				fired <- struct{}{}
			case <-done:
			}
		}()
	}
	select {
	case <-chs[0]:
	case <-fired:
	case <-ctx.Done():
	}
}

// connectRoots serves GET /v1/agent/connect/ca/roots and
// /v1/connect/ca/roots (?pem: the certificates as one PEM bundle).
func (s *apiServer) connectRoots(w http.ResponseWriter, r *http.Request) error {
	a := s.a
	idx, err := blockOn(r, a.connectRootsIndex)
	if err != nil {
		return err
	}
	setIndex(w, idx)
	roots := a.connectRoots(max(idx, 1))
	if flagSet(r, "pem") && r.URL.Query().Get("pem") != "false" {
		w.Header().Set("Content-Type", "application/pem-certificate-chain")
		for _, root := range roots.Roots {
			if _, err := w.Write([]byte(root.RootCert)); err != nil {
				return err
			}
		}
		return nil
	}
	return writeJSON(w, roots)
}

// connectRoots lists the CA certificates of the nodes this agent trusts
// now: its own (the active root: it signs this agent's leaves) and every
// other node's that (1) is listed in the catalog (membership does not say
// it left), (2) whose chain verifies now (not revoked, not cut off by an
// expiry, a retired root or a delegated revocation), and (3) whose
// published certificate passes verifyNodeCA and ends no later than its
// chain. Nodes that publish none (older agents) are left out.
func (a *Agent) connectRoots(idx uint64) apiCARoots {
	td := a.trustDomain()
	out := apiCARoots{TrustDomain: td, Roots: []apiCARoot{}}
	ext := strings.TrimSuffix(td, ".consul")
	add := func(name string, c *x509.Certificate, active bool) {
		der := c.Raw
		root := apiCARoot{
			ID:                  certFingerprint(der),
			Name:                "peerd node CA " + name,
			SigningKeyID:        colonHex(c.SubjectKeyId),
			ExternalTrustDomain: ext,
			NotBefore:           c.NotBefore.UTC(),
			NotAfter:            c.NotAfter.UTC(),
			RootCert:            string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
			Active:              active,
			PrivateKeyType:      caPrivateKeyType,
			PrivateKeyBits:      caPrivateKeyBits,
			CreateIndex:         idx,
			ModifyIndex:         idx,
		}
		if c.SerialNumber.IsUint64() {
			root.SerialNumber = c.SerialNumber.Uint64()
		}
		if active {
			out.ActiveRootID = root.ID
		}
		out.Roots = append(out.Roots, root)
	}
	if own := a.ownConnectCA(); own != nil && a.trust.admitted(a.id) {
		add(a.cfg.NodeName, own, true)
	}
	st := a.memberStatusMap()
	nodes := a.replica.Nodes()
	slices.SortFunc(nodes, func(x, y crdt.NodeEntry) int { return strings.Compare(x.Origin, y.Origin) })
	for _, n := range nodes {
		if n.Origin == a.id || len(n.Node.ConnectCA) == 0 || !a.visibleFrom(st, n.Node.Name) {
			continue
		}
		caps, err := a.trust.capsOf(n.Origin)
		if err != nil {
			continue
		}
		c, err := a.publishedCA(n.Origin, caps.Key, n.Node.ConnectCA)
		if err != nil {
			continue
		}
		if !caps.NotAfter.IsZero() && c.NotAfter.After(caps.NotAfter) {
			continue // outlives the chain that vouches for it
		}
		add(n.Node.Name, c, false)
	}
	return out
}

// connectLeaf serves GET /v1/agent/connect/ca/leaf/:service. Like Consul,
// the service need not be registered on this agent; this node's
// certificate must allow it (mayHaveLeaf). With ?index= it blocks until
// the leaf is renewed (or replaced after the CA or trust domain changed).
func (s *apiServer) connectLeaf(w http.ResponseWriter, r *http.Request, name string) error {
	a := s.a
	minIndex, wait, err := blockingParams(r)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait+jitterFor(wait))
	defer cancel()
	for {
		// Armed before the leaf is read, so that a change in between
		// wakes the wait below.
		_, nch := a.replica.WatchIndex(crdt.ScopeNode(a.id))
		_, rch := a.replica.WatchIndex(crdt.ScopeRevocations)
		leaf, err := a.leafFor(name, time.Now())
		if err != nil {
			return err
		}
		if minIndex == 0 || leaf.api.ModifyIndex != minIndex || ctx.Err() != nil {
			setIndex(w, leaf.api.ModifyIndex)
			return writeJSON(w, leaf.api)
		}
		renew, stop := context.WithDeadline(ctx, leaf.renewAt)
		waitAny(renew, []<-chan struct{}{leaf.changed, nch, rch})
		stop()
	}
}

func jitterFor(wait time.Duration) time.Duration {
	if wait < 16 {
		return 0
	}
	return time.Duration(rand.Int64N(int64(wait / 16)))
}

// connectCAConfig serves /v1/connect/ca/configuration: a read-only
// description; there is no CA to configure.
func (s *apiServer) connectCAConfig(w http.ResponseWriter, r *http.Request) error {
	a := s.a
	if r.Method != http.MethodGet {
		return errorf(http.StatusBadRequest,
			"peerd's Connect CA cannot be configured: every agent is the CA of its own services, signing with its node key "+
				"under its node certificate; change node certificates (peerd cert issue, peerd reload) or the trust roots instead; "+
				"see docs/IDENTITY.md, \"Connect certificates\"")
	}
	idx := a.replica.ScopeIndex(crdt.ScopeRevocations)
	setIndex(w, idx)
	return writeJSON(w, map[string]any{
		"Provider": "peerd",
		"Config": map[string]any{
			"LeafCertTTL":    leafTTL.String(),
			"PrivateKeyType": leafKeyType,
			"PrivateKeyBits": leafKeyBits,
			"TrustDomain":    a.trustDomain(),
			"RootCertTTL":    "the node certificate's validity",
			"Mode":           "per-node: each agent's CA key is its node identity key",
		},
		"State":                    nil,
		"ForceWithoutCrossSigning": false,
		"CreateIndex":              max(idx, 1),
		"ModifyIndex":              max(idx, 1),
	})
}
