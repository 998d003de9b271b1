package identity_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/peerd/peerd/identity"
)

func Example() {
	// Deterministic keys for the example; use identity.GenerateKey(nil) for real ones.
	root := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	node := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	chain, err := identity.Issue(root, nil, node.Public().(ed25519.PublicKey), "web-01",
		identity.Constraints{Services: []string{"web-*"}, KVPrefixes: []string{"config/web/"}},
		now, now.Add(30*24*time.Hour), 1)
	if err != nil {
		panic(err)
	}
	env, err := identity.Seal("peerd/delta", []byte("payload"), node, chain)
	if err != nil {
		panic(err)
	}

	v := identity.NewVerifier(root.Public().(ed25519.PublicKey))
	caps, err := v.Open(env, now.Add(time.Hour))
	if err != nil {
		panic(err)
	}
	fmt.Println(caps.Name, caps.MayPublishService("web-api"), caps.MayPublishService("db"), caps.MayWriteKV("config/web/port"))

	_, err = v.Open(env, now.Add(31*24*time.Hour))
	fmt.Println(err)
	// Output:
	// web-01 true false true
	// identity: envelope "peerd/delta" from 12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq: chain link 0 ("web-01"): expired: expired at 2026-01-31T00:00:00Z, now is 2026-02-01T00:00:00Z
}
