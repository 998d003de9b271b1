package gossip

import (
	"bytes"
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Replica is what anti-entropy needs from the local replica; peer adapts
// crdt's replica to it. Its methods are called from the anti-entropy
// goroutine and from HandleExchange (transport goroutines) concurrently,
// so it must be safe for concurrent use.
type Replica interface {
	// Digest is a short hash over the per-origin heads (at most 64
	// bytes); equal digests mean nothing to exchange.
	Digest() []byte
	// Heads is the encoded per-origin version vector (opaque to gossip,
	// at most MaxHeadsSize bytes).
	Heads() []byte
	// Missing returns the signed batches that a replica with remoteHeads
	// lacks, in an order Apply accepts, totalling about maxBytes (at least
	// one batch when anything is missing). Repeated calls with updated
	// heads return the rest.
	Missing(remoteHeads []byte, maxBytes int) ([][]byte, error)
	// Apply verifies and merges one batch received from peer from.
	Apply(from string, batch []byte) error
}

// AntiEntropyConfig configures AntiEntropy.
type AntiEntropyConfig struct {
	// Replica is the local replica. Required.
	Replica Replica
	// Dialer performs exchanges. Required.
	Dialer Dialer
	// Peers returns the candidate peers (admitted, alive, not self), e.g.
	// from Membership.Admitted. Called from the anti-entropy goroutine
	// once per round, with no lock held. Required.
	Peers func() []string
	// Failed returns peers that membership has declared failed but still
	// remembers (admitted, e.g. serf members with status failed until
	// they are reaped). Anti-entropy now and then tries one of them, as
	// serf's reconnect loop does: after a partition heals, each side has
	// declared the other failed, and without this the two sides would
	// repair each other only once membership has re-merged. Called from
	// the anti-entropy goroutine once per round, with no lock held. Nil
	// means failed peers are never tried.
	Failed func() []string
	// FailedShare bounds the extra sessions with failed peers: each round
	// tries one failed peer with probability min(FailedShare, f/(f+a)),
	// f and a being the numbers of failed and alive candidates, so one
	// truly dead peer among many alive ones costs almost nothing, while
	// after a 50/50 partition every other round reaches across. That
	// session runs beside the round (at most one at a time), so a dead
	// peer's timeout never delays the sessions with alive peers. 0 means
	// 0.5; negative means never.
	FailedShare float64
	// Distance estimates the round-trip time to a peer (e.g.
	// Membership.Distance); false when unknown. Nil means no nearness
	// bias.
	Distance func(peer string) (time.Duration, bool)
	// Interval is the minimum time between rounds. 0 means 1 s.
	Interval time.Duration
	// Jitter is added to Interval, uniformly random in [0, Jitter).
	// 0 means Interval (rounds every 1–2 s by default).
	Jitter time.Duration
	// PeersPerRound is how many peers a round talks to. 0 means 1.
	PeersPerRound int
	// ChunkBytes bounds the batches of one message in each direction.
	// 0 means 256 KiB; at most MaxChunkBytes.
	ChunkBytes int
	// MaxChunks bounds the sync exchanges with one peer in one round (the
	// rest waits for the next round). 0 means 16.
	MaxChunks int
	// ExchangeTimeout bounds one exchange. 0 means 5 s.
	ExchangeTimeout time.Duration
	// Seed seeds peer selection and jitter. 0 means random.
	Seed uint64
	// Logger receives anti-entropy logs. Nil discards them.
	Logger *slog.Logger
}

// AntiEntropyStats are cumulative counters.
type AntiEntropyStats struct {
	Rounds         uint64 // rounds run (each picks PeersPerRound peers)
	Exchanges      uint64 // sessions started with a peer
	DigestsEqual   uint64 // sessions that ended at the digest
	DigestsDiffer  uint64 // sessions that exchanged heads and batches
	Chunks         uint64 // sync exchanges
	BatchesPulled  uint64 // batches received and applied
	BytesPulled    uint64 // their bytes
	BatchesPushed  uint64 // batches sent
	BytesPushed    uint64 // their bytes
	ApplyErrors    uint64 // batches Apply refused (pulled or pushed to us)
	ExchangeErrors uint64 // failed exchanges (network, decode, replica)
	Served         uint64 // requests answered by HandleExchange
	FailedTried    uint64 // sessions started with a failed peer (Config.Failed)
	FailedReached  uint64 // of those, sessions that completed
}

// AntiEntropy periodically compares digests with a peer and, when they
// differ, exchanges heads and the batches each side lacks. It runs one
// goroutine (Start); HandleExchange answers peers. Methods are safe for
// concurrent use.
type AntiEntropy struct {
	cfg    AntiEntropyConfig
	logger *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards rng, lag, stats, started, closed and failedBusy.
	mu         sync.Mutex
	rng        *rand.Rand
	lag        map[string]bool // peer -> digest differed at the last session
	stats      AntiEntropyStats
	started    bool
	closed     bool
	failedBusy bool // a session with a failed peer is running
}

// NewAntiEntropy builds an AntiEntropy; Start starts its rounds.
func NewAntiEntropy(cfg AntiEntropyConfig) (*AntiEntropy, error) {
	if cfg.Replica == nil || cfg.Dialer == nil || cfg.Peers == nil {
		return nil, errors.New("gossip: anti-entropy: Replica, Dialer and Peers are required")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Jitter <= 0 {
		cfg.Jitter = cfg.Interval
	}
	if cfg.PeersPerRound <= 0 {
		cfg.PeersPerRound = 1
	}
	if cfg.ChunkBytes <= 0 {
		cfg.ChunkBytes = 256 << 10
	}
	cfg.ChunkBytes = min(cfg.ChunkBytes, MaxChunkBytes)
	if cfg.MaxChunks <= 0 {
		cfg.MaxChunks = 16
	}
	if cfg.ExchangeTimeout <= 0 {
		cfg.ExchangeTimeout = 5 * time.Second
	}
	if cfg.FailedShare == 0 {
		cfg.FailedShare = 0.5
	}
	if cfg.Seed == 0 {
		var b [8]byte
		_, _ = crand.Read(b[:])
		cfg.Seed = binary.LittleEndian.Uint64(b[:])
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	a := &AntiEntropy{
		cfg:    cfg,
		logger: logger,
		rng:    rand.New(rand.NewPCG(cfg.Seed, 0x616e7469)),
		lag:    map[string]bool{},
	}
	a.ctx, a.cancel = context.WithCancel(context.Background())
	return a, nil
}

// Start starts the rounds. Calling it again does nothing.
func (a *AntiEntropy) Start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started || a.closed {
		return
	}
	a.started = true
	a.wg.Add(1)
	go a.loop()
}

func (a *AntiEntropy) loop() {
	defer a.wg.Done()
	for {
		a.mu.Lock()
		wait := a.cfg.Interval + time.Duration(a.rng.Int64N(int64(a.cfg.Jitter)))
		a.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-a.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		a.RunRound(a.ctx)
	}
}

// RunRound picks PeersPerRound peers and synchronises with each in turn.
// It may also start a session with a failed peer (Config.Failed) beside
// them; that session is not waited for.
func (a *AntiEntropy) RunRound(ctx context.Context) {
	peers := a.cfg.Peers()
	var failed []string
	if a.cfg.Failed != nil && a.cfg.FailedShare > 0 {
		failed = a.cfg.Failed()
	}
	// One sorted copy per round at most: at thousands of peers, a scan of
	// the list per lagging or failed peer was the cost of a round.
	peers = sortedUnique(peers)
	a.mu.Lock()
	a.stats.Rounds++
	for p := range a.lag {
		if !inSorted(peers, p) {
			delete(a.lag, p)
		}
	}
	chosen := choosePeers(a.rng, peers, a.lag, a.cfg.Distance, a.cfg.PeersPerRound)
	retry := a.chooseFailedLocked(peers, failed)
	if retry != "" {
		a.failedBusy = true
		a.stats.FailedTried++
		a.wg.Add(1)
	}
	a.mu.Unlock()
	if retry != "" {
		go a.syncFailed(a.ctx, retry)
	}
	for _, p := range chosen {
		if err := a.SyncWith(ctx, p); err != nil {
			a.logger.Debug("anti-entropy session failed", "peer", p, "err", err)
		}
	}
}

// chooseFailedLocked returns a failed peer to try this round, or "": with
// probability min(FailedShare, f/(f+a)) when no such session is running.
// alive is sorted (sortedUnique).
func (a *AntiEntropy) chooseFailedLocked(alive, failed []string) string {
	if len(failed) == 0 || a.failedBusy || a.closed {
		return ""
	}
	cand := make([]string, 0, len(failed))
	for _, p := range failed {
		if p != "" && !inSorted(alive, p) {
			cand = append(cand, p)
		}
	}
	if len(cand) == 0 {
		return ""
	}
	share := min(a.cfg.FailedShare, float64(len(cand))/float64(len(cand)+len(alive)))
	if a.rng.Float64() >= share {
		return ""
	}
	cand = sortedUnique(cand) // the pick depends on the seed, not on the caller's order
	return cand[a.rng.IntN(len(cand))]
}

// sortedUnique returns peers sorted and without duplicates: peers itself
// when it already is (membership usually hands out sorted lists), else a
// sorted copy. The result must not be modified.
func sortedUnique(peers []string) []string {
	ok := true
	for i := 1; i < len(peers); i++ {
		if peers[i-1] >= peers[i] {
			ok = false
			break
		}
	}
	if ok {
		return peers
	}
	c := slices.Clone(peers)
	slices.Sort(c)
	return slices.Compact(c)
}

func inSorted(sorted []string, p string) bool {
	_, ok := slices.BinarySearch(sorted, p)
	return ok
}

// syncFailed runs one session with a failed peer; an error is expected
// when it is really gone.
func (a *AntiEntropy) syncFailed(ctx context.Context, peer string) {
	defer a.wg.Done()
	err := a.SyncWith(ctx, peer)
	a.mu.Lock()
	a.failedBusy = false
	if err == nil {
		a.stats.FailedReached++
	}
	delete(a.lag, peer) // not a candidate for the lag bias until it is alive again
	a.mu.Unlock()
	if err != nil {
		a.logger.Debug("session with failed peer failed", "peer", peer, "err", err)
	} else {
		a.logger.Debug("reached a peer membership declared failed", "peer", peer)
	}
}

// choosePeers picks up to n distinct peers. Each pick is, with
// probability 1/2, a peer whose digest differed last time (it lags or we
// do), else with probability 1/4 one of the three nearest peers (when
// Distance knows any), else any peer uniformly.
//
// Its cost is O(N) per round at most (the sortedness check, and the
// nearness scan when Distance is set), not O(N) per lagging peer: rounds
// run every second or two on every peer.
func choosePeers(rng *rand.Rand, peers []string, lag map[string]bool, dist func(string) (time.Duration, bool), n int) []string {
	cand := sortedUnique(peers)
	var out []string
	taken := func(p string) bool { return slices.Contains(out, p) } // n is small
	take := func(pool []string) { out = append(out, pool[rng.IntN(len(pool))]) }
	for len(out) < n && len(out) < len(cand) {
		r := rng.Float64()
		if r < 0.5 && len(lag) > 0 {
			var lagging []string
			for c, l := range lag {
				if l && !taken(c) && inSorted(cand, c) {
					lagging = append(lagging, c)
				}
			}
			if len(lagging) > 0 {
				slices.Sort(lagging) // map order must not leak into the pick
				take(lagging)
				continue
			}
		}
		if r < 0.75 && dist != nil {
			type pd struct {
				peer string
				d    time.Duration
			}
			var known []pd
			for _, c := range cand {
				if taken(c) {
					continue
				}
				if d, ok := dist(c); ok {
					known = append(known, pd{c, d})
				}
			}
			if len(known) > 0 {
				slices.SortFunc(known, func(x, y pd) int { return cmp.Or(cmp.Compare(x.d, y.d), cmp.Compare(x.peer, y.peer)) })
				near := make([]string, 0, 3)
				for _, k := range known[:min(3, len(known))] {
					near = append(near, k.peer)
				}
				take(near)
				continue
			}
		}
		for { // uniformly among the peers not taken yet; len(out) < len(cand)
			if p := cand[rng.IntN(len(cand))]; !taken(p) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

func (a *AntiEntropy) count(f func(s *AntiEntropyStats)) {
	a.mu.Lock()
	f(&a.stats)
	a.mu.Unlock()
}

func (a *AntiEntropy) exchange(ctx context.Context, peer string, req aeMessage, want aeType) (aeMessage, error) {
	b, err := encodeAE(req)
	if err != nil {
		return aeMessage{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.ExchangeTimeout)
	defer cancel()
	rb, err := a.cfg.Dialer.Exchange(ctx, peer, b)
	if err != nil {
		return aeMessage{}, fmt.Errorf("gossip: anti-entropy: exchange with %s: %w", peer, err)
	}
	resp, err := decodeAE(rb)
	if err != nil {
		return aeMessage{}, fmt.Errorf("gossip: anti-entropy: answer from %s: %w", peer, err)
	}
	if aeType(resp.T) != want {
		return aeMessage{}, fmt.Errorf("gossip: anti-entropy: answer from %s: type %d, want %d", peer, resp.T, want)
	}
	return resp, nil
}

// SyncWith runs one session with peer: compare digests; when they
// differ, push what the peer lacks and pull what we lack, in chunks, at
// most MaxChunks exchanges.
func (a *AntiEntropy) SyncWith(ctx context.Context, peer string) error {
	a.count(func(s *AntiEntropyStats) { s.Exchanges++ })
	err := a.syncWith(ctx, peer)
	if err != nil {
		a.count(func(s *AntiEntropyStats) { s.ExchangeErrors++ })
	}
	return err
}

func (a *AntiEntropy) syncWith(ctx context.Context, peer string) error {
	r := a.cfg.Replica
	resp, err := a.exchange(ctx, peer, aeMessage{T: uint8(aeDigestReq), Digest: r.Digest()}, aeDigestResp)
	if err != nil {
		return err
	}
	a.mu.Lock()
	if resp.Equal {
		delete(a.lag, peer) // only lagging peers are kept: the map stays small
	} else {
		a.lag[peer] = true
	}
	if resp.Equal {
		a.stats.DigestsEqual++
	} else {
		a.stats.DigestsDiffer++
	}
	a.mu.Unlock()
	if resp.Equal {
		return nil
	}
	remoteHeads := resp.Heads
	pushDone := false // everything the peer lacked has been pushed
	for range a.cfg.MaxChunks {
		var (
			push     [][]byte
			pushFull bool
		)
		if !pushDone {
			all, err := r.Missing(remoteHeads, a.cfg.ChunkBytes)
			if err != nil {
				return fmt.Errorf("gossip: anti-entropy: missing for %s: %w", peer, err)
			}
			push, pushFull = trimChunk(all, a.cfg.ChunkBytes)
			pushDone = !pushFull
		}
		sresp, err := a.exchange(ctx, peer, aeMessage{
			T: uint8(aeSyncReq), Heads: r.Heads(), Batches: push, Max: uint32(a.cfg.ChunkBytes), More: pushFull,
		}, aeSyncResp)
		if err != nil {
			return err
		}
		pulled := 0
		for _, b := range sresp.Batches {
			if err := r.Apply(peer, b); err != nil {
				a.count(func(s *AntiEntropyStats) { s.ApplyErrors++ })
				a.logger.Debug("batch from anti-entropy refused", "peer", peer, "err", err)
				continue
			}
			pulled += len(b)
		}
		a.count(func(s *AntiEntropyStats) {
			s.Chunks++
			s.BatchesPulled += uint64(len(sresp.Batches))
			s.BytesPulled += uint64(pulled)
			s.BatchesPushed += uint64(len(push))
			s.BytesPushed += uint64(chunkSize(push))
		})
		if pushDone && !sresp.More {
			return nil // both sides sent everything the other lacked
		}
		if pushFull {
			remoteHeads = sresp.Heads
		}
	}
	return nil
}

func chunkSize(bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// trimChunk keeps the longest prefix of bs within max bytes (at least one
// batch if it fits MaxChunkBytes), dropping empty batches. full reports
// that the chunk is at the limit or was cut, so more may remain.
func trimChunk(bs [][]byte, max int) (out [][]byte, full bool) {
	total := 0
	for i, b := range bs {
		if len(b) == 0 {
			continue
		}
		if (total+len(b) > max && len(out) > 0) || total+len(b) > MaxChunkBytes {
			return out, true
		}
		out = append(out, b)
		total += len(b)
		if total >= max && i < len(bs)-1 {
			return out, true
		}
	}
	return out, total >= max
}

// HandleExchange answers an anti-entropy request from peer from (its
// authenticated ID). The integrator calls it for each request received on
// an anti-entropy stream and writes back the answer; an error means the
// request was malformed or the replica failed, and the stream should be
// closed.
func (a *AntiEntropy) HandleExchange(ctx context.Context, from string, req []byte) ([]byte, error) {
	m, err := decodeAE(req)
	if err != nil {
		return nil, fmt.Errorf("gossip: anti-entropy: request from %s: %w", from, err)
	}
	r := a.cfg.Replica
	var resp aeMessage
	switch aeType(m.T) {
	case aeDigestReq:
		if bytes.Equal(m.Digest, r.Digest()) {
			resp = aeMessage{T: uint8(aeDigestResp), Equal: true}
		} else {
			resp = aeMessage{T: uint8(aeDigestResp), Heads: r.Heads()}
		}
	case aeSyncReq:
		applied := 0
		for _, b := range m.Batches {
			if err := r.Apply(from, b); err != nil {
				a.count(func(s *AntiEntropyStats) { s.ApplyErrors++ })
				continue
			}
			applied += len(b)
		}
		limit := min(int(m.Max), a.cfg.ChunkBytes)
		out, err := r.Missing(m.Heads, limit)
		if err != nil {
			return nil, fmt.Errorf("gossip: anti-entropy: missing for %s: %w", from, err)
		}
		out, full := trimChunk(out, limit)
		resp = aeMessage{T: uint8(aeSyncResp), Batches: out, More: full}
		if m.More {
			// The requester has more to push and needs our new heads.
			resp.Heads = r.Heads()
		}
		a.count(func(s *AntiEntropyStats) {
			s.BatchesPulled += uint64(len(m.Batches))
			s.BytesPulled += uint64(applied)
			s.BatchesPushed += uint64(len(out))
			s.BytesPushed += uint64(chunkSize(out))
		})
	default:
		return nil, fmt.Errorf("gossip: anti-entropy: unexpected request type %d from %s", m.T, from)
	}
	a.count(func(s *AntiEntropyStats) { s.Served++ })
	return encodeAE(resp)
}

// Stats returns the counters.
func (a *AntiEntropy) Stats() AntiEntropyStats {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.stats
}

// Close stops the rounds and waits for the goroutine. It is idempotent.
func (a *AntiEntropy) Close() error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	a.mu.Unlock()
	a.cancel()
	a.wg.Wait()
	return nil
}
