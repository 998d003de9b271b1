// Package crdt holds peerd's replicated data types and the replica state:
// services, checks, nodes, KV, intentions and revocations as delta-state
// CRDTs with causal deletes.
//
// crdt is pure: no I/O, no clock, no network, no goroutines. Time and
// randomness are arguments. It imports nothing of peerd; trust decisions
// reach it through the small interfaces it declares.
package crdt
