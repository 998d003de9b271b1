package sim

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// memberPort is the serf port every simulated node uses.
const memberPort = 7946

// nodeIP returns the simulated IP address of node i (10.x.y.z).
func nodeIP(i int) string {
	i++ // avoid 10.0.0.0
	return fmt.Sprintf("10.%d.%d.%d", (i>>16)&255, (i>>8)&255, i&255)
}

// nodeIndex parses "10.x.y.z:port" back to a node index.
func nodeIndex(addr string) (int, error) {
	if i, ok := fastNodeIndex(addr); ok {
		return i, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	ip := net.ParseIP(host).To4()
	if ip == nil || ip[0] != 10 {
		return 0, fmt.Errorf("sim: not a simulated address: %q", addr)
	}
	return (int(ip[1])<<16 | int(ip[2])<<8 | int(ip[3])) - 1, nil
}

// fastNodeIndex parses the common form "10.x.y.z:port" without
// allocating (memberlist passes an address string with every packet).
func fastNodeIndex(addr string) (int, bool) {
	if len(addr) < 3 || addr[:3] != "10." {
		return 0, false
	}
	var oct [3]int
	k, digits := 0, 0
	for i := 3; i < len(addr); i++ {
		c := addr[i]
		switch {
		case c >= '0' && c <= '9' && digits < 3:
			oct[k] = oct[k]*10 + int(c-'0')
			digits++
		case c == '.' && k < 2 && digits > 0:
			k, digits = k+1, 0
		case c == ':' && k == 2 && digits > 0:
			if oct[0] > 255 || oct[1] > 255 || oct[2] > 255 {
				return 0, false
			}
			return (oct[0]<<16 | oct[1]<<8 | oct[2]) - 1, true
		default:
			return 0, false
		}
	}
	return 0, false
}

// memberTransport is memberlist's transport for one node incarnation over
// the simulated Network: packets are datagrams (lossy), streams are
// net.Pipe pairs established after one round trip.
type memberTransport struct {
	net   *Network
	self  int
	peers func(i int) *memberTransport // current transport of node i, or nil

	from     net.Addr // this node's packet source address
	packets  chan *memberlist.Packet
	streams  chan net.Conn
	shutdown chan struct{}
	once     sync.Once
}

var _ memberlist.NodeAwareTransport = (*memberTransport)(nil)

func newMemberTransport(n *Network, self int, peers func(int) *memberTransport) *memberTransport {
	return &memberTransport{
		net:      n,
		self:     self,
		peers:    peers,
		from:     &net.UDPAddr{IP: net.ParseIP(nodeIP(self)), Port: memberPort},
		packets:  make(chan *memberlist.Packet, 4096),
		streams:  make(chan net.Conn, 16),
		shutdown: make(chan struct{}),
	}
}

func (t *memberTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return net.ParseIP(nodeIP(t.self)), memberPort, nil
}

func (t *memberTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	to, err := nodeIndex(addr)
	if err != nil {
		return time.Time{}, err
	}
	now := time.Now()
	buf := append([]byte(nil), b...)
	from := t.from
	t.net.datagram(t.self, to, ClassMember, buf, func(b []byte) {
		dst := t.peers(to)
		if dst == nil {
			return
		}
		select {
		case dst.packets <- &memberlist.Packet{Buf: b, From: from, Timestamp: time.Now()}:
		case <-dst.shutdown:
		default: // receive buffer full: dropped, as a socket would
		}
	})
	return now, nil
}

func (t *memberTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *memberTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *memberTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	to, err := nodeIndex(addr)
	if err != nil {
		return nil, err
	}
	// The SYN: a cut link or a dead host times out; the handshake costs
	// one round trip.
	d1, err := t.net.transit(t.self, to, ClassMember, make([]byte, 64))
	if err != nil {
		time.Sleep(timeout)
		return nil, fmt.Errorf("sim: dial %s: i/o timeout", addr)
	}
	d2, err := t.net.transit(to, t.self, ClassMember, make([]byte, 64))
	if err != nil {
		time.Sleep(timeout)
		return nil, fmt.Errorf("sim: dial %s: i/o timeout", addr)
	}
	time.Sleep(d1)
	dst := t.peers(to)
	if dst == nil {
		return nil, fmt.Errorf("sim: dial %s: connection refused", addr)
	}
	a, b := net.Pipe()
	select {
	case dst.streams <- &meteredConn{Conn: b, net: t.net, from: to, to: t.self}:
	case <-dst.shutdown:
		a.Close()
		b.Close()
		return nil, fmt.Errorf("sim: dial %s: connection refused", addr)
	case <-time.After(timeout):
		a.Close()
		b.Close()
		return nil, fmt.Errorf("sim: dial %s: i/o timeout", addr)
	}
	time.Sleep(d2)
	return &meteredConn{Conn: a, net: t.net, from: t.self, to: to}, nil
}

func (t *memberTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, timeout)
}

func (t *memberTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *memberTransport) Shutdown() error {
	t.once.Do(func() { close(t.shutdown) })
	return nil
}

// meteredConn counts the bytes written on a stream as membership traffic.
type meteredConn struct {
	net.Conn
	net      *Network
	from, to int
}

func (c *meteredConn) Write(b []byte) (int, error) {
	c.net.mu.Lock()
	c.net.recordLocked(ClassMember, b)
	c.net.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *meteredConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP(nodeIP(c.from)), Port: memberPort}
}

func (c *meteredConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP(nodeIP(c.to)), Port: memberPort}
}
