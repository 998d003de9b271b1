package gossip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
)

// MemNet is an in-memory network for tests: peers register handlers by
// ID and talk through Endpoints. The zero value is an empty, lossless
// network; it is safe for concurrent use.
//
// Send calls the receiver's message handler synchronously, in the
// sender's goroutine, with no MemNet lock held; Exchange likewise calls the
// receiver's exchange handler. Loss drops messages (Send and both legs of
// Exchange) at random from a seeded generator; a down peer neither sends
// nor receives.
type MemNet struct {
	// mu guards every field below.
	mu        sync.Mutex
	handlers  map[string]func(from string, msg []byte)
	exchanges map[string]func(ctx context.Context, from string, req []byte) ([]byte, error)
	down      map[string]bool
	loss      float64
	rng       *rand.Rand
	sent      uint64
	dropped   uint64
	bytes     uint64
}

// ErrUnreachable is returned by MemNet when the destination is unknown,
// down, or the message was dropped.
var ErrUnreachable = errors.New("gossip: memnet: unreachable")

// SetLoss makes the network drop each message with probability p, using a
// generator seeded with seed.
func (n *MemNet) SetLoss(p float64, seed uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.loss = p
	n.rng = rand.New(rand.NewPCG(seed, 0x6d656d6e6574))
}

// SetDown marks id unreachable (true) or reachable again (false).
func (n *MemNet) SetDown(id string, down bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down == nil {
		n.down = map[string]bool{}
	}
	n.down[id] = down
}

// Listen registers the message handler of id (typically
// Driver.HandleMessage, adapted).
func (n *MemNet) Listen(id string, h func(from string, msg []byte)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.handlers == nil {
		n.handlers = map[string]func(string, []byte){}
	}
	n.handlers[id] = h
}

// ListenExchange registers the exchange handler of id (typically
// AntiEntropy.HandleExchange).
func (n *MemNet) ListenExchange(id string, h func(ctx context.Context, from string, req []byte) ([]byte, error)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.exchanges == nil {
		n.exchanges = map[string]func(context.Context, string, []byte) ([]byte, error){}
	}
	n.exchanges[id] = h
}

// Stats returns messages sent, messages dropped and bytes sent (counting
// both legs of an exchange).
func (n *MemNet) Stats() (sent, dropped, bytes uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sent, n.dropped, n.bytes
}

// Endpoint returns the Net and Dialer of peer id.
func (n *MemNet) Endpoint(id string) *MemEndpoint { return &MemEndpoint{net: n, self: id} }

// pass decides, under the lock, whether a message from -> to of size
// bytes gets through.
func (n *MemNet) pass(from, to string, size int) bool {
	n.sent++
	n.bytes += uint64(size)
	if n.down[from] || n.down[to] || (n.loss > 0 && n.rng.Float64() < n.loss) {
		n.dropped++
		return false
	}
	return true
}

// MemEndpoint is one peer's side of a MemNet; it implements Net and Dialer.
type MemEndpoint struct {
	net  *MemNet
	self string
}

var (
	_ Net    = (*MemEndpoint)(nil)
	_ Dialer = (*MemEndpoint)(nil)
)

// Send delivers msg to the handler of to.
func (e *MemEndpoint) Send(ctx context.Context, to string, msg []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n := e.net
	n.mu.Lock()
	h := n.handlers[to]
	ok := h != nil && n.pass(e.self, to, len(msg))
	n.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnreachable, to)
	}
	h(e.self, append([]byte(nil), msg...))
	return nil
}

// Exchange calls the exchange handler of to and returns its answer.
func (e *MemEndpoint) Exchange(ctx context.Context, to string, req []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := e.net
	n.mu.Lock()
	h := n.exchanges[to]
	ok := h != nil && n.pass(e.self, to, len(req))
	n.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrUnreachable, to)
	}
	resp, err := h(ctx, e.self, append([]byte(nil), req...))
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	ok = n.pass(to, e.self, len(resp))
	n.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w: answer from %s", ErrUnreachable, to)
	}
	return resp, nil
}
