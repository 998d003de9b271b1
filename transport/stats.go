package transport

import "sync/atomic"

// Stats are counters of a Transport since New. Safe to read at any time.
type Stats struct {
	Connections       int    // connections open now
	ConnectionsTotal  uint64 // connections established (dialed or accepted)
	Dials             uint64 // outgoing handshakes attempted
	HandshakeFailures uint64 // dials that failed plus incoming peers rejected by verification
	Streams           int64  // streams open now
	StreamsTotal      uint64 // streams opened or accepted
	RejectedStreams   uint64 // incoming streams reset: bad header, unknown version or kind, timeout, closing
	MalformedHeaders  uint64 // incoming headers that did not decode (subset of RejectedStreams)
	BytesIn           uint64 // stream payload bytes read
	BytesOut          uint64 // stream payload bytes written
	HandlerPanics     uint64 // handlers that panicked (recovered, stream reset)
}

// counters holds the atomic counters behind Stats.
type counters struct {
	connsTotal        atomic.Uint64
	dials             atomic.Uint64
	handshakeFailures atomic.Uint64
	streams           atomic.Int64
	streamsTotal      atomic.Uint64
	rejectedStreams   atomic.Uint64
	malformedHeaders  atomic.Uint64
	bytesIn           atomic.Uint64
	bytesOut          atomic.Uint64
	handlerPanics     atomic.Uint64
}
