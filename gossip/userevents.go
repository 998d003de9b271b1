package gossip

import (
	"errors"
	"fmt"

	"github.com/hashicorp/serf/serf"
)

// User events are serf user events under one serf event name. Membership
// moves their payloads opaquely: what they mean, who signed them and who
// may read them is the integrator's business (peer/events.go).

// userEventName is the serf event name of peerd's user events. Other serf
// user events are ignored.
const userEventName = "peerd:event"

// serfUserEventLimit is serf's UserEventSizeLimit for this membership: the
// bound on the event name plus payload, and on the encoded serf message.
// serf's default is 512 bytes and its hard maximum 9 KiB; 1 KiB keeps a
// user event, with memberlist's framing and encryption, inside one gossip
// packet (memberlist's UDPBufferSize is 1400).
const serfUserEventLimit = 1024

// MaxUserEventPayload bounds the payload of FireUserEvent: serf's limit
// less the event name and the serf message's own encoding.
const MaxUserEventPayload = serfUserEventLimit - len(userEventName) - 48

// userEventQueue bounds the user events waiting for Config.OnUserEvent.
const userEventQueue = 256

// ErrUserEventTooLarge is returned by FireUserEvent for a payload above
// MaxUserEventPayload.
var ErrUserEventTooLarge = errors.New("gossip: membership: user event too large")

// UserEvent is one user event as serf delivered it: the payload its sender
// gave FireUserEvent (unauthenticated: anyone who can gossip can send one)
// and serf's Lamport time for it.
type UserEvent struct {
	LTime   uint64
	Payload []byte
}

// FireUserEvent broadcasts payload to every member as a serf user event
// (not coalesced). This node's OnUserEvent receives it too. Delivery is
// best effort, as serf's: gossip, no acknowledgement.
func (m *Membership) FireUserEvent(payload []byte) error {
	if len(payload) > MaxUserEventPayload {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrUserEventTooLarge, len(payload), MaxUserEventPayload)
	}
	if err := m.serf.UserEvent(userEventName, payload, false); err != nil {
		return fmt.Errorf("gossip: membership: user event: %w", err)
	}
	return nil
}

// queueUserEvent hands a serf user event of ours to dispatchUserEvents
// without blocking serf's event channel; beyond userEventQueue waiting
// events, the new one is dropped and counted.
func (m *Membership) queueUserEvent(ue serf.UserEvent) {
	if ue.Name != userEventName || m.cfg.OnUserEvent == nil {
		return
	}
	select {
	case m.userEvents <- UserEvent{LTime: uint64(ue.LTime), Payload: ue.Payload}:
	default:
		n := m.droppedUserEvents.Add(1)
		m.logger.Warn("user event queue full, dropping event", "dropped", n)
	}
}

// dispatchUserEvents calls Config.OnUserEvent, one event at a time.
func (m *Membership) dispatchUserEvents() {
	defer m.wg.Done()
	for {
		select {
		case <-m.ctx.Done():
			return
		case ue := <-m.userEvents:
			m.cfg.OnUserEvent(ue)
		}
	}
}

// DroppedUserEvents returns how many user events were dropped because
// OnUserEvent was too slow.
func (m *Membership) DroppedUserEvents() uint64 { return m.droppedUserEvents.Load() }
