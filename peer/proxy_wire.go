package peer

import (
	"errors"
	"fmt"
	"io"

	"github.com/fxamacker/cbor/v2"

	"github.com/peerd/peerd/transport"
)

// The data plane's stream layout (docs/DATAPLANE.md "header format"): the
// opener sends a transport header of Kind KindProxy whose Meta is a
// proxyHeader in CBOR, then the client's bytes at once (no round trip).
// The acceptor answers with one framed proxyReply (transport.WriteMsg:
// uint32 length + CBOR), then — when allowed — the service's bytes.

// proxyHeaderVersion is the only proxyHeader layout this build speaks.
const proxyHeaderVersion = 1

// Limits of the data plane's own wire items.
const (
	maxProxyName  = 256 // a service name or instance ID in a header
	maxProxyReply = 1024
)

// proxyHeader is the Meta of a KindProxy stream header.
type proxyHeader struct {
	Version     uint8  `cbor:"1,keyasint"`
	Source      string `cbor:"2,keyasint"`           // source service name
	Destination string `cbor:"3,keyasint"`           // destination service name
	InstanceID  string `cbor:"4,keyasint,omitempty"` // destination instance ID on the acceptor
}

// Reply codes.
const (
	replyOK          uint8 = 0
	replyDenied      uint8 = 1 // authorization refused the connection (L4)
	replyUnavailable uint8 = 2 // no such instance here, or its local port refused
	replyLimit       uint8 = 3 // a connection limit was reached
	replyBadRequest  uint8 = 4 // malformed header
)

// proxyReply is the acceptor's first frame.
type proxyReply struct {
	Code   uint8  `cbor:"1,keyasint"`
	Reason string `cbor:"2,keyasint,omitempty"`
}

var proxyEnc = func() cbor.EncMode {
	em, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return em
}()

var proxyDec = func() cbor.DecMode {
	dm, err := cbor.DecOptions{MaxArrayElements: 16, MaxMapPairs: 16, MaxNestedLevels: 4,
		DupMapKey: cbor.DupMapKeyEnforcedAPF}.DecMode()
	if err != nil {
		panic(err)
	}
	return dm
}()

func encodeProxyHeader(h proxyHeader) ([]byte, error) {
	h.Version = proxyHeaderVersion
	return proxyEnc.Marshal(h)
}

// decodeProxyHeader decodes an untrusted stream header Meta.
func decodeProxyHeader(b []byte) (proxyHeader, error) {
	var h proxyHeader
	if len(b) > transport.MaxHeaderSizeLimit {
		return h, errors.New("proxy: header too large")
	}
	if err := proxyDec.Unmarshal(b, &h); err != nil {
		return proxyHeader{}, fmt.Errorf("proxy: header: %w", err)
	}
	if h.Version != proxyHeaderVersion {
		return proxyHeader{}, fmt.Errorf("proxy: header version %d not supported", h.Version)
	}
	if h.Source == "" || h.Destination == "" {
		return proxyHeader{}, errors.New("proxy: header needs a source and a destination")
	}
	if len(h.Source) > maxProxyName || len(h.Destination) > maxProxyName || len(h.InstanceID) > maxProxyName {
		return proxyHeader{}, errors.New("proxy: name in header too long")
	}
	return h, nil
}

func writeProxyReply(w io.Writer, r proxyReply) error {
	if len(r.Reason) > maxProxyReply-16 {
		r.Reason = r.Reason[:maxProxyReply-16]
	}
	b, err := proxyEnc.Marshal(r)
	if err != nil {
		return err
	}
	return transport.WriteMsg(w, b)
}

// readProxyReply reads the acceptor's first frame (untrusted bytes).
func readProxyReply(r io.Reader) (proxyReply, error) {
	b, err := transport.ReadMsg(r, maxProxyReply)
	if err != nil {
		return proxyReply{}, err
	}
	return decodeProxyReply(b)
}

func decodeProxyReply(b []byte) (proxyReply, error) {
	var rep proxyReply
	if err := proxyDec.Unmarshal(b, &rep); err != nil {
		return proxyReply{}, fmt.Errorf("proxy: reply: %w", err)
	}
	return rep, nil
}
