package gossip

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

// DriverConfig configures a Driver.
type DriverConfig struct {
	// Plumtree configures the state machine; Plumtree.Self is required.
	// A zero Plumtree.Seed is replaced by a random one.
	Plumtree PlumtreeConfig
	// Net sends encoded messages. Required.
	Net Net
	// Deliver hands a payload seen for the first time to the application
	// (verify the signature, merge into the replica) and returns whether
	// it is valid; invalid payloads are not forwarded. It is called from
	// the goroutine that called HandleMessage, with no Driver lock held,
	// possibly concurrently for different payloads; it may block, which
	// delays that caller only. Required.
	Deliver func(from string, payload []byte) bool
	// TickInterval is the Plumtree tick: IHAVE batching period and the
	// unit of its timeouts. 0 means 100 ms.
	TickInterval time.Duration
	// SendQueue bounds the messages waiting for one peer; beyond it the
	// oldest are dropped. 0 means 1024.
	SendQueue int
	// SendTimeout bounds one Net.Send. 0 means 5 s.
	SendTimeout time.Duration
	// Logger receives driver logs (the caller adds any "component"
	// attribute). Nil discards them.
	Logger *slog.Logger
}

// DriverStats are the Driver's counters plus its state machine's.
type DriverStats struct {
	Plumtree     PlumtreeStats
	DecodeErrors uint64 // messages that did not decode
	SendErrors   uint64 // Net.Send failures
	SendDropped  uint64 // messages dropped because a peer's queue was full
}

// Driver runs a Plumtree state machine: it decodes incoming messages,
// ticks the machine, and sends its output through per-peer queues. Its
// methods are safe for concurrent use.
type Driver struct {
	cfg    DriverConfig
	logger *slog.Logger
	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// mu guards pt, started and closed. Never held while calling Deliver
	// or Net.
	mu      sync.Mutex
	pt      *Plumtree
	started bool
	closed  bool

	// outMu orders output: step takes it before releasing mu and holds it
	// while it queues the state machine's output, so that the per-peer
	// queues receive messages in the order the state machine produced
	// them (a NEIGHBOR_ACK overtaken by an older DISCONNECT would leave a
	// one-sided link). Lock order: mu, outMu, qmu.
	outMu sync.Mutex

	// qmu guards queues and the counters below.
	qmu          sync.Mutex
	queues       map[string]*sendQueue
	decodeErrors uint64
	sendErrors   uint64
	sendDropped  uint64
}

type sendQueue struct {
	msgs [][]byte
}

// NewDriver builds a Driver; Start starts its ticker.
func NewDriver(cfg DriverConfig) (*Driver, error) {
	if cfg.Net == nil || cfg.Deliver == nil {
		return nil, errors.New("gossip: driver: Net and Deliver are required")
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = 100 * time.Millisecond
	}
	if cfg.SendQueue <= 0 {
		cfg.SendQueue = 1024
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 5 * time.Second
	}
	if cfg.Plumtree.Seed == 0 {
		var b [8]byte
		_, _ = crand.Read(b[:])
		cfg.Plumtree.Seed = binary.LittleEndian.Uint64(b[:])
	}
	pt, err := NewPlumtree(cfg.Plumtree)
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	d := &Driver{
		cfg:    cfg,
		logger: logger,
		pt:     pt,
		queues: map[string]*sendQueue{},
	}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	return d, nil
}

// Start starts the ticker goroutine. Calling it again does nothing.
func (d *Driver) Start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started || d.closed {
		return
	}
	d.started = true
	d.wg.Add(1)
	go d.tickLoop()
}

func (d *Driver) tickLoop() {
	defer d.wg.Done()
	t := time.NewTicker(d.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
			d.step(func(p *Plumtree) { p.Tick() })
		}
	}
}

// step runs f on the state machine under the lock and sends its output.
// It returns false, without calling f, once the Driver is closed.
func (d *Driver) step(f func(p *Plumtree)) bool {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return false
	}
	f(d.pt)
	out := d.pt.Outbox()
	if len(out) == 0 {
		d.mu.Unlock()
		return true
	}
	d.outMu.Lock()
	d.mu.Unlock()
	d.send(out)
	d.outMu.Unlock()
	return true
}

// ErrClosed is returned by operations on a closed Driver or AntiEntropy.
var ErrClosed = errors.New("gossip: closed")

// SetPeers sets the peers membership allows (admitted, alive; the
// integrator calls it on every membership event).
func (d *Driver) SetPeers(peers []string) {
	d.step(func(p *Plumtree) { p.SetPeers(peers) })
}

// Broadcast spreads payload (already applied locally) to every peer.
func (d *Driver) Broadcast(payload []byte) (MessageID, error) {
	var (
		id  MessageID
		err error
	)
	if !d.step(func(p *Plumtree) { id, err = p.Broadcast(payload) }) {
		return MessageID{}, ErrClosed
	}
	return id, err
}

// HandleMessage processes one message received from peer from (its
// authenticated ID). It calls Deliver for a new payload before returning.
// The error reports a malformed message; the caller may log it or drop
// the peer.
func (d *Driver) HandleMessage(from string, msg []byte) error {
	m, err := DecodeMessage(msg)
	if err != nil {
		d.qmu.Lock()
		d.decodeErrors++
		d.qmu.Unlock()
		return fmt.Errorf("gossip: from %s: %w", from, err)
	}
	var (
		del Delivery
		ok  bool
	)
	d.step(func(p *Plumtree) { del, ok = p.Receive(from, m) })
	if !ok {
		return nil
	}
	valid := d.cfg.Deliver(from, del.Payload)
	if !valid {
		d.logger.Debug("invalid payload not forwarded", "peer", from, "id", del.ID.String())
	}
	d.step(func(p *Plumtree) { p.Validated(del.ID, valid) })
	return nil
}

// Neighbors returns the current Plumtree view.
func (d *Driver) Neighbors() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pt.Neighbors()
}

// Stats returns the counters.
func (d *Driver) Stats() DriverStats {
	d.mu.Lock()
	st := DriverStats{Plumtree: d.pt.Stats()}
	d.mu.Unlock()
	d.qmu.Lock()
	st.DecodeErrors, st.SendErrors, st.SendDropped = d.decodeErrors, d.sendErrors, d.sendDropped
	d.qmu.Unlock()
	return st
}

// send encodes envelopes and queues them per peer.
func (d *Driver) send(out []Envelope) {
	var (
		last    *Message
		lastEnc []byte
	)
	for i := range out {
		env := &out[i]
		var b []byte
		// One eager push goes to several peers: encode it once.
		if last != nil && env.Msg.Type == MsgGossip && last.Type == MsgGossip &&
			env.Msg.Round == last.Round && len(env.Msg.Payload) == len(last.Payload) &&
			&env.Msg.Payload[0] == &last.Payload[0] {
			b = lastEnc
		} else {
			var err error
			b, err = EncodeMessage(env.Msg)
			if err != nil {
				d.logger.Warn("cannot encode message", "err", err)
				continue
			}
			last, lastEnc = &env.Msg, b
		}
		d.enqueue(env.To, b)
	}
}

func (d *Driver) enqueue(to string, b []byte) {
	d.qmu.Lock()
	defer d.qmu.Unlock()
	if d.ctx.Err() != nil {
		return
	}
	q, running := d.queues[to]
	if !running {
		q = &sendQueue{}
		d.queues[to] = q
	}
	if len(q.msgs) >= d.cfg.SendQueue {
		q.msgs = q.msgs[1:]
		d.sendDropped++
	}
	q.msgs = append(q.msgs, b)
	if !running {
		d.wg.Add(1)
		go d.sendLoop(to, q)
	}
}

// sendLoop sends q's messages in order and exits when q is empty; the
// queue exists in d.queues exactly while its sendLoop runs.
func (d *Driver) sendLoop(to string, q *sendQueue) {
	defer d.wg.Done()
	for {
		d.qmu.Lock()
		if len(q.msgs) == 0 || d.ctx.Err() != nil {
			delete(d.queues, to)
			d.qmu.Unlock()
			return
		}
		b := q.msgs[0]
		q.msgs[0] = nil
		q.msgs = q.msgs[1:]
		d.qmu.Unlock()

		ctx, cancel := context.WithTimeout(d.ctx, d.cfg.SendTimeout)
		err := d.cfg.Net.Send(ctx, to, b)
		cancel()
		if err != nil {
			d.qmu.Lock()
			d.sendErrors++
			d.qmu.Unlock()
			d.logger.Debug("send failed", "peer", to, "err", err)
		}
	}
}

// Close stops the ticker and the senders (dropping queued messages) and
// waits for them. It is idempotent.
func (d *Driver) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.qmu.Lock()
	d.cancel()
	d.qmu.Unlock()
	d.wg.Wait()
	return nil
}
