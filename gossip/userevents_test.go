package gossip

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// userEventLog collects what OnUserEvent receives.
type userEventLog struct {
	mu  sync.Mutex
	got []UserEvent
}

func (l *userEventLog) add(e UserEvent) {
	l.mu.Lock()
	l.got = append(l.got, e)
	l.mu.Unlock()
}

func (l *userEventLog) has(payload []byte) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.got {
		if bytes.Equal(e.Payload, payload) {
			return true
		}
	}
	return false
}

func startUserEventNode(tb testing.TB, name string, log *userEventLog) *Membership {
	tb.Helper()
	m, err := New(Config{
		NodeName:    name,
		BindAddr:    "127.0.0.1",
		BindPort:    -1,
		Tags:        map[string]string{"id": name, "peer": "127.0.0.1:1"},
		Profile:     ProfileLocal,
		OnUserEvent: log.add,
		Logger:      testLogger(tb),
	})
	if err != nil {
		tb.Fatalf("start %s: %v", name, err)
	}
	tb.Cleanup(func() { _ = m.Close() })
	return m
}

func TestUserEvents(t *testing.T) {
	t.Parallel()
	logs := []*userEventLog{{}, {}, {}}
	var ms []*Membership
	for i, l := range logs {
		ms = append(ms, startUserEventNode(t, fmt.Sprintf("u%d", i), l))
	}
	first := fmt.Sprintf("127.0.0.1:%d", ms[0].LocalMember().Port)
	for _, m := range ms[1:] {
		if _, err := m.Join([]string{first}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "3 members", func() bool {
		for _, m := range ms {
			if m.NumMembers() != 3 {
				return false
			}
		}
		return true
	})

	// The largest payload fits serf's limit, with its name and encoding.
	big := bytes.Repeat([]byte{'x'}, MaxUserEventPayload)
	for i, p := range [][]byte{[]byte("hello"), big} {
		if err := ms[1].FireUserEvent(p); err != nil {
			t.Fatalf("fire %d: %v", i, err)
		}
		waitFor(t, 20*time.Second, fmt.Sprintf("event %d everywhere (the sender too)", i), func() bool {
			for _, l := range logs {
				if !l.has(p) {
					return false
				}
			}
			return true
		})
	}
	for i, l := range logs {
		l.mu.Lock()
		for _, e := range l.got {
			if e.LTime == 0 {
				t.Errorf("node %d: event without Lamport time", i)
			}
		}
		l.mu.Unlock()
	}

	err := ms[0].FireUserEvent(append(big, 'y'))
	if !errors.Is(err, ErrUserEventTooLarge) {
		t.Fatalf("a payload above MaxUserEventPayload: %v, want ErrUserEventTooLarge", err)
	}
	if n := ms[0].DroppedUserEvents(); n != 0 {
		t.Errorf("dropped %d user events", n)
	}
}
