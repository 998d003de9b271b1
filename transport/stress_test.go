package transport

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestChurnUnderConcurrency runs echoes from both sides while connections
// are cut with ClosePeer; errors are expected, deadlocks, races and leaked
// streams are not.
func TestChurnUnderConcurrency(t *testing.T) {
	a, b := newNode(t, nodeOpts{}), newNode(t, nodeOpts{})
	a.Handle(KindSync, echoHandler)
	b.Handle(KindSync, echoHandler)
	ctx := testCtx(t)
	var wg, churn sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				from, to := a, b
				if (w+i)%2 == 1 {
					from, to = b, a
				}
				msg := []byte(fmt.Sprintf("w%d-%d", w, i))
				got, err := echoOnce(t, ctx, from, to, msg)
				if err == nil && bytes.Equal(got, msg) {
					mu.Lock()
					ok++
					mu.Unlock()
				}
			}
		})
	}
	done := make(chan struct{})
	churn.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			default:
			}
			if i%2 == 0 {
				a.ClosePeer(b.pub)
			} else {
				b.ClosePeer(a.pub)
			}
			time.Sleep(3 * time.Millisecond) // pacing, not waiting for a condition
		}
	})
	wg.Wait()
	close(done)
	churn.Wait()
	if ok == 0 {
		t.Fatal("no echo succeeded")
	}
	// After the churn everything still works and no stream is left open.
	if got, err := echoOnce(t, ctx, a, b, []byte("calm")); err != nil || string(got) != "calm" {
		t.Fatalf("echo after churn = %q, %v", got, err)
	}
	waitFor(t, 10e9, "streams released", func() bool { return a.Stats().Streams == 0 && b.Stats().Streams == 0 })
	t.Logf("%d of 200 echoes succeeded during churn", ok)
}

func TestOpenStreamInvalidAddr(t *testing.T) {
	a := newNode(t, nodeOpts{})
	for _, ap := range []netip.AddrPort{{}, netip.MustParseAddrPort("127.0.0.1:0")} {
		if _, _, err := a.OpenStream(testCtx(t), ap, nil, Header{Kind: KindSync}); err == nil {
			t.Errorf("OpenStream(%v) succeeded", ap)
		}
	}
}

// TestCloseDuringDial closes a Transport while a dial to a silent address
// is in flight: the dial and Close both return long before the (one
// minute) handshake timeout.
func TestCloseDuringDial(t *testing.T) {
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	a := newNode(t, nodeOpts{handshake: time.Minute})
	errc := make(chan error, 1)
	go func() {
		_, _, err := a.OpenStream(context.Background(), silent.LocalAddr().(*net.UDPAddr).AddrPort(), nil, Header{Kind: KindSync})
		errc <- err
	}()
	waitFor(t, 5e9, "dial started", func() bool { return a.Stats().Dials == 1 })
	closed := make(chan error, 1)
	go func() { closed <- a.Close() }()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("dial to a silent address succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("dial still running after Close")
	}
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("Close did not return")
	}
}
