package peer

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"sync"
	"sync/atomic"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/identity"
)

// connectCAState is an agent's Connect CA: its own CA certificate, the
// verdicts on the CA certificates other nodes published, the trust domain
// and the leaf certificates it issued (connect_ca_leaf.go). Its zero value
// is ready. mu guards every field but invalid; no method calls out (to the
// replica, the trust book or a logger) while holding it.
type connectCAState struct {
	mu sync.Mutex
	// own is the CA certificate built from ownChain (the chain it was
	// built for: a renewed chain gives a new certificate).
	ownChain []byte
	own      *x509.Certificate
	ownErr   error
	// td is the trust domain derived at revocations-scope index tdAt
	// (rotations are revocation records).
	tdAt uint64
	td   string
	// verdicts: node ID → the verdict on the CA certificate it published,
	// by the certificate's hash.
	verdicts map[string]caVerdict
	// leaves: service name → the current leaf certificate.
	leaves map[string]*issuedLeaf
	// lastIndex is the ModifyIndex of the last leaf issued.
	lastIndex uint64

	// invalid counts the distinct published CA certificates refused by
	// verifyNodeCA (each is logged once).
	invalid atomic.Uint64
}

// maxCAVerdicts bounds the verdict cache; when full it is emptied.
const maxCAVerdicts = 4096

type caVerdict struct {
	sum  [32]byte
	cert *x509.Certificate
	err  error
}

// ownConnectCA returns this node's CA certificate for its current chain,
// built once per chain. It is nil (and the error logged once) when it
// cannot be built, which the chain validation at New and SetNodeChain
// rules out.
func (a *Agent) ownConnectCA() *x509.Certificate {
	chain := a.nodeChain()
	st := &a.ca
	st.mu.Lock()
	if st.own != nil && bytes.Equal(st.ownChain, chain) {
		c := st.own
		st.mu.Unlock()
		return c
	}
	st.mu.Unlock()
	der, err := nodeCACert(a.cfg.NodeKey, chain)
	var c *x509.Certificate
	if err == nil {
		c, err = x509.ParseCertificate(der)
	}
	st.mu.Lock()
	st.ownChain, st.own, st.ownErr = bytes.Clone(chain), c, err
	st.mu.Unlock()
	if err != nil {
		a.log.Error("building this node's Connect CA certificate", "err", err)
	}
	return c
}

// ownConnectCADER is the DER of ownConnectCA, for the node record.
func (a *Agent) ownConnectCADER() []byte {
	if c := a.ownConnectCA(); c != nil {
		return c.Raw
	}
	return nil
}

// publishedCA returns the CA certificate node origin published, verified
// by verifyNodeCA; each refused certificate is counted and logged once.
func (a *Agent) publishedCA(origin string, pub ed25519.PublicKey, der []byte) (*x509.Certificate, error) {
	sum := sha256.Sum256(der)
	st := &a.ca
	st.mu.Lock()
	v, ok := st.verdicts[origin]
	st.mu.Unlock()
	if ok && v.sum == sum {
		return v.cert, v.err
	}
	c, err := verifyNodeCA(der, pub)
	st.mu.Lock()
	if st.verdicts == nil || len(st.verdicts) >= maxCAVerdicts {
		st.verdicts = make(map[string]caVerdict)
	}
	st.verdicts[origin] = caVerdict{sum: sum, cert: c, err: err}
	st.mu.Unlock()
	if err != nil && (!ok || v.sum != sum) {
		st.invalid.Add(1)
		a.log.Warn("a node published an invalid Connect CA certificate; it is not listed in the roots", "peer", origin, "err", err)
	}
	return c, err
}

// trustDomain is the mesh's SPIFFE trust domain (trustDomainOf), derived
// again when the replica's trust statements change.
func (a *Agent) trustDomain() string {
	idx := a.replica.ScopeIndex(crdt.ScopeRevocations)
	st := &a.ca
	st.mu.Lock()
	if st.td != "" && st.tdAt == idx {
		td := st.td
		st.mu.Unlock()
		return td
	}
	st.mu.Unlock()
	var links []rotationLink
	for _, blob := range a.replica.Revocations() {
		rot, err := identity.UnmarshalRotation(blob)
		if err != nil {
			continue // a revocation
		}
		// Only rotations this agent applied: the old root was retired
		// and the new one is trusted or was retired in turn.
		if _, ok := a.trust.v.RetiredAt(rot.OldRoot); !ok {
			continue
		}
		if _, ok := a.trust.v.RetiredAt(rot.NewRoot); !ok && !a.trust.v.IsRoot(rot.NewRoot) {
			continue
		}
		links = append(links, rotationLink{old: rot.OldRoot, new: rot.NewRoot})
	}
	td := trustDomainOf(a.cfg.TrustRoots[0], links)
	st.mu.Lock()
	st.td, st.tdAt = td, idx
	st.mu.Unlock()
	return td
}
