package sim

// Per-link random draws. A message's loss, duplication, jitter and
// reordering come from a generator keyed by (seed, sender, receiver, how
// many messages that directed link carried before), not from one stream
// shared by every goroutine: the k-th message on a link gets the same
// draws in every run of a seed, whatever the traffic on other links and
// whatever order the scheduler ran the senders in. (Which message is the
// k-th one on a link still depends on the peers' behaviour; see "Replay
// and its limits" in docs/SIM.md.)

// linkRNG is a splitmix64 generator for one message.
type linkRNG struct{ s uint64 }

func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// newLinkRNG returns the generator of message k on from→to.
func newLinkRNG(seed uint64, from, to int, k uint64) linkRNG {
	link := mix64(seed^0x6c696e6b) ^ mix64(uint64(from)<<32|uint64(uint32(to)))
	return linkRNG{s: mix64(link + k*0x9e3779b97f4a7c15)}
}

func (r *linkRNG) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

// float64 returns a value in [0, 1).
func (r *linkRNG) float64() float64 { return float64(r.next()>>11) / (1 << 53) }

// int64n returns a value in [0, n) for n > 0 (modulo bias below 2^-40
// for the delays used here).
func (r *linkRNG) int64n(n int64) int64 { return int64(r.next() % uint64(n)) }

// linkCounters counts messages per directed link: a flat table for up to
// 2,048 nodes, a map beyond.
type linkCounters struct {
	n    int
	flat []uint32
	m    map[uint64]uint32
}

func newLinkCounters(n int) linkCounters {
	if n <= 2048 {
		return linkCounters{n: n, flat: make([]uint32, n*n)}
	}
	return linkCounters{n: n, m: map[uint64]uint32{}}
}

// next returns how many messages from→to carried before, and counts one.
func (c *linkCounters) next(from, to int) uint64 {
	if c.flat != nil {
		i := from*c.n + to
		k := c.flat[i]
		c.flat[i]++
		return uint64(k)
	}
	key := uint64(from)<<32 | uint64(uint32(to))
	k := c.m[key]
	c.m[key] = k + 1
	return uint64(k)
}

// linkRNGLocked returns the generator of the next message on from→to.
func (n *Network) linkRNGLocked(from, to int) linkRNG {
	return newLinkRNG(n.seed, from, to, n.sent.next(from, to))
}
