package crdt

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/btree"
)

// Options tunes a Replica. The zero value is usable.
type Options struct {
	// MaxValueSize bounds a KV value in bytes, locally and on merge.
	// Zero means 512 KiB (Consul's limit).
	MaxValueSize int
	// MaxClockDrift is how far a remote HLC timestamp may be ahead of local
	// time before the record is rejected (it is accepted on a later retry
	// once local time catches up). Zero means 60 s.
	MaxClockDrift time.Duration
}

const (
	defaultMaxValueSize  = 512 << 10
	defaultMaxClockDrift = 60 * time.Second
)

func (o Options) withDefaults() Options {
	if o.MaxValueSize <= 0 {
		o.MaxValueSize = defaultMaxValueSize
	}
	if o.MaxClockDrift <= 0 {
		o.MaxClockDrift = defaultMaxClockDrift
	}
	return o
}

// recKey names one replicated record.
type recKey struct {
	kind Kind
	key  string
}

// version is one retained record version: live (with its decoded value) or
// dead (a header-only stub kept until its dot is causally stable).
type version struct {
	h    header
	e    Entry
	live bool
	val  any // *Node, *Service, *Check, *kvBody, *intentionVal, []byte; nil when dead
	// void: its context was not applied (a refused KV write, a revoked
	// origin's record); kept across restarts (snapshot.Void).
	void bool
}

type intentionVal struct {
	in   Intention
	hash [32]byte // of the signed blob; breaks ties between equal versions
	// withdrawn: its signer's key was revoked or its root retired, after
	// it was merged (WithdrawIntentions) or before (IntentionJudge); reads
	// skip it, as if absent.
	withdrawn bool
}

// keyState holds the live versions of one record and local read metadata.
type keyState struct {
	key         string // the record key, shared by its versions
	live        []*version
	createIndex uint64 // KV only: local index when the key last appeared
	modifyIndex uint64 // local index of the last change of the live set
}

// Replica is one node's full replica. All methods are safe for concurrent
// use: one mutex, mu, guards every field below it. Authorizer and Signer
// calls happen with mu held; they must not call back into the Replica.
type Replica struct {
	origin string
	signer Signer
	opts   Options

	mu       sync.Mutex
	clk      clock
	counter  uint64 // last dot counter issued by this origin
	cc       causalContext
	byOrigin map[string]map[uint64]*version // every retained version by dot
	origins  map[string]string              // interned origin IDs
	digest   [32]byte                       // cached Digest, valid if digestOK
	digestOK bool
	keys     map[recKey]*keyState
	// pendingKill holds dots superseded by a version that arrived before
	// them: when such a dot arrives for that record, it is dead at once.
	pendingKill map[Dot]recKey
	// horizon: dots at or below it may have been garbage-collected here.
	horizon  VersionVector
	rejected map[string]uint64
	// revoked: origins known to be revoked (by Merge or RevokeOrigins),
	// with the revocation time; Merge treats their records as revoked even
	// when its VerifyOrigin ran before the revocation was applied. swept:
	// those RevokeOrigins has swept. Both are rebuilt after a restart by
	// calling RevokeOrigins again.
	revoked map[string]time.Time
	swept   map[string]struct{}
	// pending: trust statements (revocation-kind records) correctly signed
	// by their origin that the Authorizer could not apply yet
	// (ErrNotYetApplicable); held dead with their body, kept through
	// garbage collection, and retried by RetryStatements. At most
	// MaxPendingStatements.
	pending map[Dot]struct{}

	index          uint64            // local change index, >= 1
	scopes         map[string]uint64 // scope -> index of its last change
	watch          map[string]chan struct{}
	kvWatch        map[string]chan struct{}       // by KV prefix
	svcByName      map[string]map[string]struct{} // service name -> service keys
	svcByOrigin    map[string]map[string]string   // origin -> service key -> name
	checksByOrigin map[string]map[string]struct{} // origin -> check keys
	checksBySvc    map[string]map[string]struct{} // "origin/serviceID" ("origin/" for node checks) -> check keys
	kvTomb         map[string]uint64              // absent KV key -> local index of its removal
	kvFloor        uint64                         // highest pruned kvTomb index
	kvPrefixIdx    map[string]uint64              // KV prefix -> index of its last change, for prefixes asked for
	kvOrder        *btree.BTreeG[string]          // every KV key in keys, in order: prefix reads walk a range
	rareKeys       map[Kind]map[string]struct{}   // intention and revocation keys in keys: listed without a walk of keys
}

// NewReplica returns an empty replica for origin, which signs its own
// writes with signer. origin must be non-empty and contain no '/' or NUL.
func NewReplica(origin string, signer Signer, opts Options) (*Replica, error) {
	if origin == "" || len(origin) > maxOriginLen || strings.ContainsAny(origin, "/\x00") {
		return nil, fmt.Errorf("crdt: invalid origin %q", origin)
	}
	if signer == nil {
		return nil, fmt.Errorf("crdt: nil signer")
	}
	opts = opts.withDefaults()
	return &Replica{
		origin:         origin,
		signer:         signer,
		opts:           opts,
		clk:            clock{maxDrift: opts.MaxClockDrift},
		cc:             newCausalContext(),
		byOrigin:       map[string]map[uint64]*version{},
		origins:        map[string]string{},
		keys:           map[recKey]*keyState{},
		pendingKill:    map[Dot]recKey{},
		horizon:        VersionVector{},
		rejected:       map[string]uint64{},
		revoked:        map[string]time.Time{},
		swept:          map[string]struct{}{},
		pending:        map[Dot]struct{}{},
		index:          1,
		scopes:         map[string]uint64{},
		watch:          map[string]chan struct{}{},
		kvWatch:        map[string]chan struct{}{},
		svcByName:      map[string]map[string]struct{}{},
		svcByOrigin:    map[string]map[string]string{},
		checksByOrigin: map[string]map[string]struct{}{},
		checksBySvc:    map[string]map[string]struct{}{},
		kvTomb:         map[string]uint64{},
		kvPrefixIdx:    map[string]uint64{},
		kvOrder:        newKVOrder(),
		rareKeys:       map[Kind]map[string]struct{}{},
	}, nil
}

// Origin returns the local origin ID.
func (r *Replica) Origin() string { return r.origin }

// Delta is a batch of signed record versions (and, in repair deltas, a GC
// horizon). Deltas merge in any order, any number of times. Callers must
// not modify the byte slices of a Delta they did not build.
type Delta struct {
	Entries []Entry
	// Horizon, in repair deltas from DeltaSince, says per origin that the
	// sender holds no dot of that origin in the range other than those in
	// Entries: the rest were garbage-collected (dead and causally stable).
	Horizon map[string]Range
}

// Range is the half-open counter range (From, To].
type Range struct {
	_    struct{} `cbor:",toarray"`
	From uint64
	To   uint64
}

func serviceKey(origin, id string) string { return origin + "/" + id }

// IntentionKey is the record key of the intention source -> destination.
func IntentionKey(source, destination string) string { return source + "\x00" + destination }

func revocationKey(blob []byte) string {
	h := sha256.Sum256(blob)
	return hex.EncodeToString(h[:])
}

// PutNode publishes this node's own record.
func (r *Replica) PutNode(n Node, now time.Time) (*Delta, error) {
	if n.Name == "" {
		return nil, fmt.Errorf("%w: node needs a name", ErrInvalid)
	}
	return r.write(KindNode, r.origin, OpPut, &n, now)
}

// PutService registers or updates one of this node's service instances.
func (r *Replica) PutService(s Service, now time.Time) (*Delta, error) {
	if s.ID == "" || s.Name == "" {
		return nil, fmt.Errorf("%w: service needs an ID and a name", ErrInvalid)
	}
	return r.write(KindService, serviceKey(r.origin, s.ID), OpPut, &s, now)
}

// DeleteService deregisters one of this node's service instances.
func (r *Replica) DeleteService(id string, now time.Time) (*Delta, error) {
	return r.deleteOwned(KindService, id, now)
}

// PutCheck registers or updates one of this node's checks. An empty Status
// means critical, as in Consul.
func (r *Replica) PutCheck(c Check, now time.Time) (*Delta, error) {
	if c.ID == "" {
		return nil, fmt.Errorf("%w: check needs an ID", ErrInvalid)
	}
	if c.Status == "" {
		c.Status = StatusCritical
	}
	if !validStatus(c.Status) {
		return nil, fmt.Errorf("%w: check %q: status %q is not passing, warning or critical", ErrInvalid, c.ID, c.Status)
	}
	return r.write(KindCheck, serviceKey(r.origin, c.ID), OpPut, &c, now)
}

func validStatus(s string) bool {
	return s == StatusPassing || s == StatusWarning || s == StatusCritical
}

// DeleteCheck removes one of this node's checks.
func (r *Replica) DeleteCheck(id string, now time.Time) (*Delta, error) {
	return r.deleteOwned(KindCheck, id, now)
}

func (r *Replica) deleteOwned(k Kind, id string, now time.Time) (*Delta, error) {
	key := serviceKey(r.origin, id)
	r.mu.Lock()
	defer r.mu.Unlock()
	if ks := r.keys[recKey{k, key}]; ks == nil || len(ks.live) == 0 {
		return nil, fmt.Errorf("%w: %s %q", ErrNotFound, k, id)
	}
	return r.writeLocked(k, key, OpDelete, nil, nil, now)
}

func (r *Replica) checkKV(key string, value []byte) error {
	if key == "" || len(key) > maxKeyLen {
		return fmt.Errorf("%w: KV key length %d (1..%d)", ErrInvalid, len(key), maxKeyLen)
	}
	if len(value) > r.opts.MaxValueSize {
		return fmt.Errorf("%w: key %q has a %d-byte value, the limit is %d bytes (Options.MaxValueSize)",
			ErrValueTooLarge, key, len(value), r.opts.MaxValueSize)
	}
	return nil
}

// KVPut writes key. It supersedes every version of key this replica holds.
func (r *Replica) KVPut(key string, value []byte, flags uint64, now time.Time) (*Delta, error) {
	if err := r.checkKV(key, value); err != nil {
		return nil, err
	}
	return r.write(KindKV, key, OpPut, &kvBody{Value: value, Flags: flags}, now)
}

// KVCAS writes key only if its local ModifyIndex equals modifyIndex; 0
// means "only if absent". The check is against this replica only: two
// partitions can both succeed, and the loser stays visible as a conflict.
func (r *Replica) KVCAS(key string, value []byte, flags, modifyIndex uint64, now time.Time) (bool, *Delta, error) {
	if err := r.checkKV(key, value); err != nil {
		return false, nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.casMatchesLocked(key, modifyIndex) {
		return false, nil, nil
	}
	d, err := r.writeLocked(KindKV, key, OpPut, &kvBody{Value: value, Flags: flags}, nil, now)
	return err == nil, d, err
}

func (r *Replica) casMatchesLocked(key string, modifyIndex uint64) bool {
	ks := r.keys[recKey{KindKV, key}]
	if ks == nil || len(ks.live) == 0 {
		return modifyIndex == 0
	}
	return modifyIndex != 0 && ks.modifyIndex == modifyIndex
}

// KVDelete removes key; deleting an absent key is a no-op (nil delta).
func (r *Replica) KVDelete(key string, now time.Time) (*Delta, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.kvDeleteLocked(key, now)
}

func (r *Replica) kvDeleteLocked(key string, now time.Time) (*Delta, error) {
	if ks := r.keys[recKey{KindKV, key}]; ks == nil || len(ks.live) == 0 {
		return nil, nil
	}
	return r.writeLocked(KindKV, key, OpDelete, nil, nil, now)
}

// KVDeleteCAS deletes key only if its local ModifyIndex equals modifyIndex.
func (r *Replica) KVDeleteCAS(key string, modifyIndex uint64, now time.Time) (bool, *Delta, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if modifyIndex == 0 || !r.casMatchesLocked(key, modifyIndex) {
		return false, nil, nil
	}
	d, err := r.kvDeleteLocked(key, now)
	return err == nil, d, err
}

// KVDeleteTree removes every key with the prefix, in one delta (nil when
// nothing matched).
func (r *Replica) KVDeleteTree(prefix string, now time.Time) (*Delta, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var keys []string
	for k, ks := range r.keys {
		if k.kind == KindKV && len(ks.live) > 0 && strings.HasPrefix(k.key, prefix) {
			keys = append(keys, k.key)
		}
	}
	var out *Delta
	for _, k := range sortedStrings(keys) {
		d, err := r.writeLocked(KindKV, k, OpDelete, nil, nil, now)
		if err != nil {
			return out, err
		}
		if out == nil {
			out = d
		} else {
			out.Entries = append(out.Entries, d.Entries...)
		}
	}
	return out, nil
}

// PutIntention stores a signed intention document (a create, update or
// deletion) after auth has verified it. An older or equal version than the
// one held for the same (source, destination) is ErrRollback.
func (r *Replica) PutIntention(signed []byte, auth Authorizer, now time.Time) (*Delta, error) {
	in, err := auth.VerifyIntention(signed)
	if err != nil {
		return nil, fmt.Errorf("%w: intention: %w", ErrUnauthorized, err)
	}
	if err := in.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := IntentionKey(in.SourceName, in.DestinationName)
	if ks := r.keys[recKey{KindIntention, key}]; ks != nil {
		for _, v := range ks.live {
			if held := v.val.(*intentionVal).in.Version; in.Version <= held {
				return nil, fmt.Errorf("%w: %s -> %s version %d, holding version %d",
					ErrRollback, in.SourceName, in.DestinationName, in.Version, held)
			}
		}
	}
	return r.writeLocked(KindIntention, key, OpPut, signed, &intentionVal{in: in, hash: sha256.Sum256(signed)}, now)
}

// AddRevocation stores a signed revocation after auth has verified it. A
// revocation already held yields a nil delta.
func (r *Replica) AddRevocation(signed []byte, auth Authorizer, now time.Time) (*Delta, error) {
	if err := auth.VerifyRevocation(signed); err != nil {
		return nil, fmt.Errorf("%w: revocation: %w", ErrUnauthorized, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	key := revocationKey(signed)
	if ks := r.keys[recKey{KindRevocation, key}]; ks != nil && len(ks.live) > 0 {
		return nil, nil
	}
	return r.writeLocked(KindRevocation, key, OpPut, signed, nil, now)
}

func (r *Replica) write(k Kind, key string, op Op, body any, now time.Time) (*Delta, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writeLocked(k, key, op, body, nil, now)
}

// writeLocked builds, signs and applies one local record version. val is
// the decoded value for reads; nil means decode the encoded body.
func (r *Replica) writeLocked(k Kind, key string, op Op, body, val any, now time.Time) (*Delta, error) {
	return r.writeCtxLocked(k, key, op, body, val, nil, now)
}

// writeCtxLocked is writeLocked with an explicit context: nil means every
// live version of the key (what a write normally supersedes).
func (r *Replica) writeCtxLocked(k Kind, key string, op Op, body, val any, ctx []Dot, now time.Time) (*Delta, error) {
	h := header{V: recordVersion, Kind: k, Op: op, Key: key, Origin: r.origin, Context: ctx}
	var e Entry
	if op == OpPut {
		b, err := marshal(body)
		if err != nil {
			return nil, fmt.Errorf("crdt: encode %s %q: %w", k, key, err)
		}
		e.Body = b
		h.BodyHash = bodyHash(b)
	}
	if !k.ordered() && ctx == nil {
		if ks := r.keys[recKey{k, key}]; ks != nil {
			for _, v := range ks.live {
				h.Context = append(h.Context, v.h.dot())
			}
			sortDots(h.Context)
		}
	}
	if len(h.Context) > maxContextDots {
		// Too many concurrent siblings to name: keep the newest ones' dots.
		h.Context = h.Context[len(h.Context)-maxContextDots:]
	}
	counter := r.counter
	if m := r.cc.max(r.origin); m > counter {
		counter = m
	}
	h.Counter = counter + 1
	h.HLC = r.clk.tick(now)
	hb, err := marshal(&h)
	if err != nil {
		return nil, fmt.Errorf("crdt: encode header: %w", err)
	}
	sig, err := r.signer.Sign(signedMessage(hb))
	if err != nil {
		return nil, fmt.Errorf("crdt: sign %s %q: %w", k, key, err)
	}
	e.Header, e.Sig = hb, sig
	if op == OpPut && val == nil {
		if val, err = r.decodeValue(&h, e.Body); err != nil {
			return nil, err
		}
	}
	r.counter = h.Counter
	r.applyLocked(h, e, val, true)
	return &Delta{Entries: []Entry{e}}, nil
}

// decodeValue decodes a put body into the value kept for reads.
func (r *Replica) decodeValue(h *header, body []byte) (any, error) {
	v, err := decodeBody(h.Kind, body)
	if err != nil {
		return nil, err
	}
	switch h.Kind {
	case KindIntention:
		return nil, fmt.Errorf("crdt: intention body needs verification")
	case KindService:
		if s := v.(*Service); serviceKey(h.Origin, s.ID) != h.Key {
			return nil, fmt.Errorf("%w: service ID %q does not match key %q", ErrMalformed, s.ID, h.Key)
		}
	case KindCheck:
		if c := v.(*Check); serviceKey(h.Origin, c.ID) != h.Key {
			return nil, fmt.Errorf("%w: check ID %q does not match key %q", ErrMalformed, c.ID, h.Key)
		}
	case KindRevocation:
		if revocationKey(v.([]byte)) != h.Key {
			return nil, fmt.Errorf("%w: revocation key is not the blob's hash", ErrMalformed)
		}
	}
	return v, nil
}
