package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"
)

// TestConnectCA drives the Connect CA of two real agents through
// HashiCorp's Go client: a leaf for "web" from agent a and one for "db"
// from agent b; a mutual TLS 1.3 handshake between them in which each side
// verifies the other's chain with the roots its own agent lists; then a
// revoked a, whose CA leaves b's roots so that a new handshake fails.
func TestConnectCA(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	m := newMesh(t)
	a := m.start("a", agentOpts{})
	b := m.start("b", agentOpts{join: []string{"a"}})
	expectAllAlive(t, a, b)
	ca, cb := consulClient(t, a, ""), consulClient(t, b, "")

	// Each agent lists both CAs once it has the other's node record.
	var rootsB *consul.CARootList
	for _, c := range []struct {
		name string
		cl   *consul.Client
	}{{"a", ca}, {"b", cb}} {
		waitFor(t, 15*time.Second, func() error {
			roots, _, err := c.cl.Agent().ConnectCARoots(nil)
			if err != nil {
				return err
			}
			if len(roots.Roots) != 2 {
				return fmt.Errorf("%s lists %d roots, want 2", c.name, len(roots.Roots))
			}
			rootsB = roots
			return nil
		})
	}
	rootsA, _, err := ca.Agent().ConnectCARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	if rootsA.TrustDomain != rootsB.TrustDomain || rootsA.ActiveRootID == rootsB.ActiveRootID {
		t.Fatalf("trust domains %q and %q (want equal), active roots %s and %s (want each agent's own)",
			rootsA.TrustDomain, rootsB.TrustDomain, rootsA.ActiveRootID, rootsB.ActiveRootID)
	}
	uri := func(svc string) string {
		return "spiffe://" + rootsA.TrustDomain + "/ns/default/dc/dc1/svc/" + svc
	}

	web, _, err := ca.Agent().ConnectCALeaf("web", nil)
	if err != nil {
		t.Fatal(err)
	}
	db, _, err := cb.Agent().ConnectCALeaf("db", nil)
	if err != nil {
		t.Fatal(err)
	}
	if web.ServiceURI != uri("web") || db.ServiceURI != uri("db") {
		t.Fatalf("leaf URIs %q and %q, want %q and %q", web.ServiceURI, db.ServiceURI, uri("web"), uri("db"))
	}
	webPair, err := tls.X509KeyPair([]byte(web.CertPEM), []byte(web.PrivateKeyPEM))
	if err != nil {
		t.Fatal(err)
	}
	dbPair, err := tls.X509KeyPair([]byte(db.CertPEM), []byte(db.PrivateKeyPEM))
	if err != nil {
		t.Fatal(err)
	}

	// Authorize understands the minted URI (no intention: the default
	// policy decides; the point is that the URI is read).
	if az, err := cb.Agent().ConnectAuthorize(&consul.AgentAuthorizeParams{Target: "db", ClientCertURI: web.ServiceURI}); err != nil || az.Reason == "" {
		t.Fatalf("authorize: %+v %v", az, err)
	}
	if conf, _, err := cb.Connect().CAGetConfig(nil); err != nil || conf.Provider != "peerd" {
		t.Fatalf("CA configuration: %+v %v", conf, err)
	}

	// db's side verifies with b's roots, fetched per handshake; web's side
	// with a's.
	handshake := func() (server, client error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		srvErr := make(chan error, 1)
		go func() {
			conn, err := ln.Accept()
			if err != nil {
				srvErr <- err
				return
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			s := tls.Server(conn, &tls.Config{
				MinVersion:            tls.VersionTLS13,
				Certificates:          []tls.Certificate{dbPair},
				ClientAuth:            tls.RequireAnyClientCert,
				VerifyPeerCertificate: verifySPIFFE(t, cb, uri("web")),
			})
			srvErr <- s.Handshake()
		}()
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		c := tls.Client(conn, &tls.Config{
			MinVersion:            tls.VersionTLS13,
			Certificates:          []tls.Certificate{webPair},
			InsecureSkipVerify:    true, // verifySPIFFE checks the chain and the URI instead of a host name
			VerifyPeerCertificate: verifySPIFFE(t, ca, uri("db")),
		})
		client = c.Handshake()
		if client == nil && c.ConnectionState().Version != tls.VersionTLS13 {
			t.Errorf("negotiated TLS version %x, want 1.3", c.ConnectionState().Version)
		}
		return <-srvErr, client
	}
	if s, c := handshake(); s != nil || c != nil {
		t.Fatalf("handshake between web (a) and db (b): server %v, client %v", s, c)
	}

	// Revoke a: b's roots lose a's CA (a blocking query wakes on it), and
	// db no longer accepts web's leaf.
	rev := filepath.Join(m.dir, "a.rev")
	m.cli("revoke", "-ca-key", m.root, "-subject", a.key+".pub", "-out", rev)
	_, meta, err := cb.Agent().ConnectCARoots(nil)
	if err != nil {
		t.Fatal(err)
	}
	m.cli("revocation", "submit", "-http-addr", b.ip+":8500", rev)
	waitFor(t, 15*time.Second, func() error {
		roots, qm, err := cb.Agent().ConnectCARoots(&consul.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 5 * time.Second})
		if err != nil {
			return err
		}
		meta = qm
		for _, r := range roots.Roots {
			if r.ID == rootsA.ActiveRootID {
				return fmt.Errorf("b still lists a's CA %s", r.ID)
			}
		}
		if len(roots.Roots) != 1 {
			return fmt.Errorf("b lists %d roots, want its own only", len(roots.Roots))
		}
		return nil
	})
	s, c := handshake()
	if s == nil {
		t.Fatal("db accepted web's leaf from the revoked node a")
	}
	t.Logf("after the revocation: server %v; client %v", s, c)
}

// verifySPIFFE verifies a peer's chain against the roots the agent behind
// cl lists at the time of the handshake, and its SPIFFE URI.
func verifySPIFFE(t testing.TB, cl *consul.Client, wantURI string) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		roots, _, err := cl.Agent().ConnectCARoots(nil)
		if err != nil {
			return fmt.Errorf("roots: %w", err)
		}
		pool := x509.NewCertPool()
		for _, r := range roots.Roots {
			pool.AppendCertsFromPEM([]byte(r.RootCertPEM))
		}
		if len(raw) == 0 {
			return errors.New("no certificate")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, b := range raw {
			if certs[i], err = x509.ParseCertificate(b); err != nil {
				return err
			}
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return err
		}
		if len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != wantURI {
			return fmt.Errorf("peer URI %v, want %s", certs[0].URIs, wantURI)
		}
		return nil
	}
}
