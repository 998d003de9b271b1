// Package crdt holds peerd's replicated data types and the replica state:
// services, checks, nodes, KV, intentions and revocations as delta-state
// CRDTs with causal deletes.
//
// crdt is pure: no I/O, no clock, no network, no goroutines. Time and
// randomness are arguments. It imports nothing of peerd; trust decisions
// reach it through the small interfaces it declares (Signer, Authorizer).
// docs/REPLICA.md explains the data model and the merge rules.
//
// # API
//
//	r, err := NewReplica(origin, signer, Options{})   // one per node; safe for concurrent use
//
// Local writes return the *Delta to disseminate:
//
//	r.PutNode(Node, now); r.PutService(Service, now); r.DeleteService(id, now)
//	r.PutCheck(Check, now); r.DeleteCheck(id, now)
//	r.KVPut(key, value, flags, now); r.KVCAS(key, value, flags, modifyIndex, now)
//	r.KVDelete(key, now); r.KVDeleteCAS(key, modifyIndex, now); r.KVDeleteTree(prefix, now)
//	r.PutIntention(signedDoc, auth, now); r.AddRevocation(signedBlob, auth)
//
// Remote deltas: r.Merge(delta, auth, now) verifies every entry before
// merging. Revocations: after the Authorizer learned one, r.RevokeOrigins(auth,
// now) brings the records merged before it to the state Merge gives records
// merged after it, and returns deletes to disseminate (docs/REPLICA.md,
// "Revoked origins", "Cut-off origins"); after the Authorizer's trust
// changed, r.RetryStatements(auth) applies the trust statements held
// because they did not apply yet ("Trust statements out of order").
// Anti-entropy: r.Digest() (32 bytes), r.Heads(), r.DeltaSince(heads,
// maxBytes). Garbage collection: r.CollectGarbage(liveMembersHeads),
// r.ForgetOrigin(reapedOrigin). Wire: EncodeDelta, DecodeDelta. Durability:
// r.MarshalState, r.LoadState, and r.Apply to replay deltas after a
// snapshot, in any order.
//
// Reads: Node, Nodes, ServiceNames, Services(name, tags), NodeServices,
// Checks(CheckFilter), KVGet, KVList, KVKeys, Intentions, IntentionFor,
// MatchIntentions, CheckIntention, Revocations, LastNodeRecord, Rejected.
// Blocking queries:
// Index, ScopeIndex(scope), Watch(scope), WatchIndex(scope) with the
// scopes ScopeNodes, ScopeServices, ScopeChecks, ScopeIntentions,
// ScopeRevocations, ScopeService(name), ScopeNode(origin), ScopeKV+prefix.
package crdt
