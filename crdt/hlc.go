package crdt

import (
	"fmt"
	"time"
)

// HLC is a hybrid logical clock timestamp packed into 64 bits: the high 48
// bits are Unix milliseconds, the low 16 bits a logical counter. Packed
// values compare like the (physical, logical) pairs they encode.
type HLC uint64

const hlcLogicalBits = 16

// MakeHLC packs a physical time in milliseconds and a logical counter.
func MakeHLC(ms uint64, logical uint16) HLC {
	return HLC(ms<<hlcLogicalBits | uint64(logical))
}

// Physical returns the Unix milliseconds part.
func (h HLC) Physical() uint64 { return uint64(h) >> hlcLogicalBits }

// Logical returns the logical counter part.
func (h HLC) Logical() uint16 { return uint16(h) }

// Time returns the physical part as a time.Time (UTC).
func (h HLC) Time() time.Time { return time.UnixMilli(int64(h.Physical())).UTC() }

func (h HLC) String() string { return fmt.Sprintf("%d.%d", h.Physical(), h.Logical()) }

func unixMs(now time.Time) uint64 {
	ms := now.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms) & (1<<48 - 1)
}

// clock is the replica's HLC state. It is guarded by Replica.mu.
type clock struct {
	last     HLC
	maxDrift time.Duration
}

// tick returns a timestamp greater than every timestamp issued or observed.
func (c *clock) tick(now time.Time) HLC {
	pt := MakeHLC(unixMs(now), 0)
	if pt > c.last {
		c.last = pt
	} else {
		c.last++ // a logical overflow carries into the physical part
	}
	return c.last
}

// check rejects a remote timestamp that is too far ahead of now.
func (c *clock) check(remote HLC, now time.Time) error {
	limit := unixMs(now) + uint64(c.maxDrift/time.Millisecond)
	if remote.Physical() > limit {
		return fmt.Errorf("%w: remote %s is %s ahead of local time (limit %s)", ErrClockDrift,
			remote.Time().Format(time.RFC3339Nano),
			time.Duration(remote.Physical()-unixMs(now))*time.Millisecond, c.maxDrift)
	}
	return nil
}

// observe moves the clock past an accepted remote timestamp.
func (c *clock) observe(remote HLC) {
	if remote > c.last {
		c.last = remote
	}
}
