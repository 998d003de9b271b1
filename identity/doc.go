// Package identity is peerd's trust model without a central CA: Ed25519
// keys, node IDs derived from public keys, delegation certificates with
// narrowing constraints, signed envelopes, revocations and root rotation.
//
// identity imports nothing of peerd and does no I/O beyond reading and
// writing key and chain files; verification takes the current time as an
// argument and never reads the clock. It knows nothing about what envelopes
// carry (deltas, intentions): callers check the returned Capabilities.
//
// Files, one concept each:
//
//	nodeid.go        node IDs (libp2p PeerID text form) and their parser
//	keyfile.go       key generation and PEM-style key files
//	constraints.go   service patterns, KV prefixes, narrowing rules
//	certificate.go   one delegation certificate, its encoding and signature
//	chain.go         chains, chain files, Issue
//	capabilities.go  what a verified key may do
//	verifier.go      trusted roots, chain verification, verdict cache
//	envelope.go      signed envelopes (Seal, Open)
//	revocation.go    key revocations
//	rotation.go      root rotation statements
//	encoding.go      CBOR modes, canonical decoding, size limits, text armour
//	errors.go        sentinel errors and LinkError
//
// docs/IDENTITY.md describes the wire formats key by key and the trust rules.
package identity
