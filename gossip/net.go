package gossip

import "context"

// Net sends one encoded gossip message to a peer; the integrator
// implements it over transport streams (one length-prefixed message per
// Send, or a long-lived stream per peer). Peers are named by the IDs given
// to Driver.SetPeers (node IDs).
//
// Send is called from one sender goroutine per destination peer, never
// under a gossip lock, so it may block until ctx is done; calls for
// different peers run concurrently. An error means the message is lost;
// Plumtree and anti-entropy repair losses. The receiving side hands every
// message to Driver.HandleMessage.
type Net interface {
	Send(ctx context.Context, to string, msg []byte) error
}

// Dialer performs one request/response exchange with a peer, for
// anti-entropy. The receiving side answers with AntiEntropy.HandleExchange.
// Exchange is called from the anti-entropy goroutine, never under a gossip
// lock; it must honour ctx.
type Dialer interface {
	Exchange(ctx context.Context, to string, req []byte) ([]byte, error)
}

// NetFunc adapts a function to Net.
type NetFunc func(ctx context.Context, to string, msg []byte) error

// Send calls f.
func (f NetFunc) Send(ctx context.Context, to string, msg []byte) error { return f(ctx, to, msg) }

// DialerFunc adapts a function to Dialer.
type DialerFunc func(ctx context.Context, to string, req []byte) ([]byte, error)

// Exchange calls f.
func (f DialerFunc) Exchange(ctx context.Context, to string, req []byte) ([]byte, error) {
	return f(ctx, to, req)
}
