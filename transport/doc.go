// Package transport carries peerd traffic between peers over authenticated
// QUIC (quic-go): one connection per peer pair, each side presenting a
// self-signed TLS 1.3 certificate bound to its Ed25519 node key, and typed
// bidirectional streams with a small CBOR header.
//
// What it owns: the UDP socket, the node certificate (key + delegation
// chain in a private extension), mutual verification during the handshake,
// connection reuse and dial de-duplication, the stream header and its
// dispatch to per-Kind handlers, limits (streams per connection, header
// size, message size, handshake, header and idle timeouts) and the
// length-prefixed message framing (WriteMsg, ReadMsg) that gossip uses. The
// byte layouts are in docs/WIRE.md "## transport".
//
// What it must not know: what a delegation chain means, who is revoked,
// what flows over a stream. Chains are opaque bytes judged by
// Config.VerifyPeer, which the integrator wires to package identity;
// stream contents belong to the Handler of their Kind.
//
// Lifecycle: New builds, Start binds and accepts, Close closes every
// connection and waits for every goroutine the Transport started.
//
// transport may import identity and nothing else of peerd.
package transport
