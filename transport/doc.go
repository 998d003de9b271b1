// Package transport carries peerd traffic between peers over authenticated
// QUIC (quic-go): one connection per peer pair, each side presenting a
// self-signed TLS 1.3 certificate bound to its Ed25519 node key, and typed
// bidirectional streams with a small CBOR header.
//
// transport may import identity and nothing else of peerd.
package transport
