package transport

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Defaults applied by Config.validate when a field is zero.
const (
	DefaultListenAddr         = "0.0.0.0:0"
	DefaultMaxIncomingStreams = 10_000
	DefaultIdleTimeout        = 60 * time.Second
	DefaultHandshakeTimeout   = 5 * time.Second
	DefaultHeaderTimeout      = 10 * time.Second
	DefaultMaxHeaderSize      = 4 << 10
	DefaultKeepAlivePeriod    = 15 * time.Second
	DefaultDeadPeerTimeout    = 45 * time.Second

	// Flow-control windows (see docs/WIRE.md "## transport"). quic-go's own
	// defaults are 512 KiB initial / 6 MiB max per stream and 512 KiB / 15 MiB
	// per connection; a proxy carrying bulk TCP streams wants more headroom
	// per stream and, above all, per connection shared by many streams.
	DefaultInitialStreamWindow     = 1 << 20  // 1 MiB
	DefaultMaxStreamWindow         = 16 << 20 // 16 MiB
	DefaultInitialConnectionWindow = 2 << 20  // 2 MiB
	DefaultMaxConnectionWindow     = 48 << 20 // 48 MiB

	// MaxHeaderSizeLimit is the largest MaxHeaderSize accepted: the header
	// length prefix is a uint16.
	MaxHeaderSizeLimit = 1<<16 - 1
)

// Config configures a Transport. The zero value of every field except Key
// and VerifyPeer means "use the default" documented on the field.
type Config struct {
	// Key is the node's Ed25519 private key. The TLS certificate presented to
	// peers carries its public half. Required.
	Key ed25519.PrivateKey

	// Chain is the node's delegation chain, opaque to transport, carried in a
	// private certificate extension (docs/WIRE.md). Nil sends an empty chain.
	Chain []byte

	// ListenAddr is the UDP address to bind, e.g. "127.0.0.2:8300".
	// Empty means DefaultListenAddr (all interfaces, ephemeral port).
	ListenAddr string

	// VerifyPeer decides whether a peer presenting pub and chain may connect.
	// It is called during every TLS handshake, on both the dialing and the
	// accepting side, from quic-go's handshake goroutine, and once more when
	// the connection is put to use (see ClosePeer); it must be safe for
	// concurrent use and should not block for long (it delays the handshake).
	// A non-nil error fails the handshake. It must check that chain binds
	// pub (transport only guarantees that the peer holds pub's private key).
	// Required.
	VerifyPeer func(pub ed25519.PublicKey, chain []byte) error

	// Logger receives diagnostics. Nil discards them.
	Logger *slog.Logger

	// MaxIncomingStreams bounds the concurrent bidirectional streams a peer
	// may open on one connection. Zero means DefaultMaxIncomingStreams.
	MaxIncomingStreams int64

	// IdleTimeout closes a connection that has had no open stream for this
	// long. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration

	// KeepAlivePeriod is how often QUIC keep-alive packets are sent on an
	// otherwise silent connection. Zero means DefaultKeepAlivePeriod.
	KeepAlivePeriod time.Duration

	// DeadPeerTimeout is QUIC's idle timeout: a connection from which nothing
	// (not even a keep-alive) was received for this long is dead. Zero means
	// DefaultDeadPeerTimeout. It must exceed KeepAlivePeriod.
	DeadPeerTimeout time.Duration

	// HandshakeTimeout bounds a QUIC+TLS handshake. Zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// HeaderTimeout bounds how long an accepted stream may take to deliver
	// its header. Zero means DefaultHeaderTimeout.
	HeaderTimeout time.Duration

	// MaxHeaderSize bounds the encoded stream header in bytes. Zero means
	// DefaultMaxHeaderSize; at most MaxHeaderSizeLimit.
	MaxHeaderSize int

	// Flow-control windows in bytes; zero means the Default* constant of the
	// same name.
	InitialStreamWindow     uint64
	MaxStreamWindow         uint64
	InitialConnectionWindow uint64
	MaxConnectionWindow     uint64

	// now returns the current time for certificate validity checks; nil means
	// time.Now. Tests set it.
	now func() time.Time
}

// validate checks c and returns a copy with defaults filled in.
func (c Config) validate() (Config, error) {
	if len(c.Key) != ed25519.PrivateKeySize {
		return c, errors.New("transport: config: Key must be an Ed25519 private key")
	}
	if c.VerifyPeer == nil {
		return c, errors.New("transport: config: VerifyPeer is required")
	}
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxIncomingStreams == 0 {
		c.MaxIncomingStreams = DefaultMaxIncomingStreams
	}
	if c.MaxIncomingStreams < 0 {
		return c, fmt.Errorf("transport: config: MaxIncomingStreams %d < 0", c.MaxIncomingStreams)
	}
	setDur := func(d *time.Duration, def time.Duration, name string) error {
		if *d == 0 {
			*d = def
		}
		if *d < 0 {
			return fmt.Errorf("transport: config: %s %v < 0", name, *d)
		}
		return nil
	}
	for _, f := range []struct {
		d    *time.Duration
		def  time.Duration
		name string
	}{
		{&c.IdleTimeout, DefaultIdleTimeout, "IdleTimeout"},
		{&c.KeepAlivePeriod, DefaultKeepAlivePeriod, "KeepAlivePeriod"},
		{&c.DeadPeerTimeout, DefaultDeadPeerTimeout, "DeadPeerTimeout"},
		{&c.HandshakeTimeout, DefaultHandshakeTimeout, "HandshakeTimeout"},
		{&c.HeaderTimeout, DefaultHeaderTimeout, "HeaderTimeout"},
	} {
		if err := setDur(f.d, f.def, f.name); err != nil {
			return c, err
		}
	}
	if c.DeadPeerTimeout <= c.KeepAlivePeriod {
		return c, fmt.Errorf("transport: config: DeadPeerTimeout %v must exceed KeepAlivePeriod %v",
			c.DeadPeerTimeout, c.KeepAlivePeriod)
	}
	if c.MaxHeaderSize == 0 {
		c.MaxHeaderSize = DefaultMaxHeaderSize
	}
	if c.MaxHeaderSize < 16 || c.MaxHeaderSize > MaxHeaderSizeLimit {
		return c, fmt.Errorf("transport: config: MaxHeaderSize %d outside [16, %d]", c.MaxHeaderSize, MaxHeaderSizeLimit)
	}
	setWin := func(w *uint64, def uint64) {
		if *w == 0 {
			*w = def
		}
	}
	setWin(&c.InitialStreamWindow, DefaultInitialStreamWindow)
	setWin(&c.MaxStreamWindow, DefaultMaxStreamWindow)
	setWin(&c.InitialConnectionWindow, DefaultInitialConnectionWindow)
	setWin(&c.MaxConnectionWindow, DefaultMaxConnectionWindow)
	if c.InitialStreamWindow > c.MaxStreamWindow || c.InitialConnectionWindow > c.MaxConnectionWindow {
		return c, errors.New("transport: config: an initial flow-control window exceeds its maximum")
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c, nil
}
