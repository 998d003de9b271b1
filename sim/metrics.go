package sim

import (
	"slices"
	"sync"
	"time"

	"github.com/peerd/peerd/crdt"
)

// update is one tracked write.
type update struct {
	origin  int
	issued  time.Time
	healthy bool            // issued while no fault was active
	reached []uint64        // bitset of nodes that hold it
	delays  []time.Duration // arrival delay at each other node, in arrival order
}

// metrics collects per-update arrivals and failure detections. Methods
// are safe for concurrent use.
type metrics struct {
	n int

	// mu guards every field below.
	mu        sync.Mutex
	byDot     map[crdt.Dot]int
	updates   []*update
	crashedAt map[string]time.Time // member name → crash time, while down
	detect    []time.Duration      // failure detection delays (observer, crash)
}

func newMetrics(n int) *metrics {
	return &metrics{n: n, byDot: map[crdt.Dot]int{}, crashedAt: map[string]time.Time{}}
}

// track registers a local write at origin.
func (m *metrics) track(origin int, d *crdt.Delta, now time.Time, healthy bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := &update{origin: origin, issued: now, healthy: healthy, reached: make([]uint64, (m.n+63)/64)}
	u.reached[origin/64] |= 1 << (origin % 64)
	idx := len(m.updates)
	m.updates = append(m.updates, u)
	for _, e := range d.Entries {
		if _, _, dot, err := crdt.DecodeEntryHeader(e.Header); err == nil {
			m.byDot[dot] = idx
		}
	}
}

// arrived records the tracked updates of d reaching node i.
func (m *metrics) arrived(i int, d *crdt.Delta, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range d.Entries {
		_, _, dot, err := crdt.DecodeEntryHeader(e.Header)
		if err != nil {
			continue
		}
		idx, ok := m.byDot[dot]
		if !ok {
			continue
		}
		u := m.updates[idx]
		if u.reached[i/64]&(1<<(i%64)) != 0 {
			continue
		}
		u.reached[i/64] |= 1 << (i % 64)
		u.delays = append(u.delays, now.Sub(u.issued))
	}
}

func (m *metrics) crashed(name string, now time.Time) {
	m.mu.Lock()
	m.crashedAt[name] = now
	m.mu.Unlock()
}

func (m *metrics) restarted(name string) {
	m.mu.Lock()
	delete(m.crashedAt, name)
	m.mu.Unlock()
}

// failed records that observer saw name fail.
func (m *metrics) failed(observer int, name string, now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t, ok := m.crashedAt[name]; ok {
		m.detect = append(m.detect, now.Sub(t))
	}
}

// Dist summarises durations.
type Dist struct {
	N             int
	P50, P99, Max time.Duration
}

func distOf(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	q := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.5) - 1
		return s[max(0, min(len(s)-1, i))]
	}
	return Dist{N: len(s), P50: q(0.50), P99: q(0.99), Max: s[len(s)-1]}
}

// updateSummary computes, over healthy updates, the per-peer arrival
// delays and the time to reach every node in live (those up at the end,
// other than the origin); incomplete counts updates some live node lacks.
func (m *metrics) updateSummary(live []bool) (perPeer, all Dist, allTimes []time.Duration, incomplete, total int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var delays []time.Duration
	for _, u := range m.updates {
		if !u.healthy {
			continue
		}
		total++
		delays = append(delays, u.delays...)
		complete := true
		for i, up := range live {
			if up && u.reached[i/64]&(1<<(i%64)) == 0 {
				complete = false
				break
			}
		}
		if !complete {
			incomplete++
			continue
		}
		var mx time.Duration
		for _, d := range u.delays {
			mx = max(mx, d)
		}
		allTimes = append(allTimes, mx)
	}
	return distOf(delays), distOf(allTimes), allTimes, incomplete, total
}

func (m *metrics) detection() Dist {
	m.mu.Lock()
	defer m.mu.Unlock()
	return distOf(m.detect)
}
