// Package identity is peerd's trust model without a central CA: Ed25519
// keys, node IDs derived from public keys, delegation certificates with
// narrowing constraints, signed envelopes, revocations and root rotation.
//
// identity imports nothing of peerd and does no I/O beyond reading and
// writing key files; verification takes the current time as an argument.
package identity
