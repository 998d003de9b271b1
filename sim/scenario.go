package sim

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
)

// Scenario is one simulation: peers, network, workload, timed faults and
// expectations. Zero fields take the defaults documented on each.
type Scenario struct {
	// Name labels the reports. "" means "scenario".
	Name string
	// Peers is the number of nodes. 0 means 10.
	Peers int
	// Seed seeds every generator of the run. 0 means 1.
	Seed uint64
	// Mode is ModePlumtree (default) or ModeMemberlist (baseline).
	Mode string
	// Membership is MembershipSerf (default: real serf/memberlist) or
	// MembershipStatic (lighter, for scale: see docs/SIM.md).
	Membership string
	// DetectDelay is how long static membership takes to drop a crashed
	// peer from every view. 0 means 5 s.
	DetectDelay time.Duration
	// Network is the link profile at the start.
	Network LinkProfile
	// Skew is the maximum clock skew of a peer (uniform in ±Skew). 0 means none.
	Skew time.Duration
	// Services is the number of services each peer registers at start.
	Services int
	// Tick is the Plumtree tick. 0 means 100 ms.
	Tick time.Duration
	// Batch is the outbox flush interval. 0 means 100 ms.
	Batch time.Duration
	// AEInterval is the anti-entropy interval (plus as much jitter).
	// 0 means 1 s.
	AEInterval time.Duration
	// AEFailedShare is gossip.AntiEntropyConfig.FailedShare: how often
	// anti-entropy tries a peer serf declared failed. 0 means gossip's
	// default (0.5); negative means never.
	AEFailedShare float64
	// Fanout is Plumtree's fanout. 0 means gossip's default (4).
	Fanout int
	// ProbeInterval and GossipInterval override memberlist's LAN timings
	// (1 s and 200 ms) when non-zero.
	ProbeInterval, GossipInterval time.Duration
	// RetransmitMult overrides memberlist's RetransmitMult (LAN default
	// 4) when non-zero: each broadcast is sent RetransmitMult ×
	// ⌈log10(N+1)⌉ times. Consul exposes it as gossip_lan.retransmit_mult.
	RetransmitMult int
	// JoinStagger is the delay between two peers starting. 0 means 5 ms.
	JoinStagger time.Duration
	// Idle is a quiet period after membership has settled, measured as
	// idle traffic. 0 means 5 s.
	Idle time.Duration
	// Duration is the fault phase (workload and events). 0 means 30 s.
	Duration time.Duration
	// Workload describes the operations.
	Workload Workload
	// Events are the timed faults, relative to the start of the fault phase.
	Events []Event
	// Expect are the budgets checked after the run.
	Expect Expect

	permissive permissiveAuthz // negative tests only (authz.go)
}

// Workload is a Poisson stream of KV operations on random live peers.
type Workload struct {
	// Rate is operations per second. 0 means no workload.
	Rate float64
	// Reads is the fraction of operations that are local reads.
	Reads float64
	// Deletes is the fraction of writes that are deletes.
	Deletes float64
	// Keys is the number of distinct keys. 0 means 100.
	Keys int
	// Start and Stop bound the workload inside the fault phase. Stop 0
	// means the end of the fault phase.
	Start, Stop time.Duration
	// Intentions is the number of intention versions the sim root signs,
	// evenly spread over [Start, Stop), round-robin over IntentionPairs
	// source → destination pairs (0 means 3), each submitted at a random
	// live peer (see authz.go).
	Intentions, IntentionPairs int
}

// Event is one timed fault. Actions:
//
//	partition  Groups random groups (default 2) of equal size, or Sides
//	           fractions; Asymmetric cuts only lower→higher groups
//	isolate    cut Node (or a random live node when Node < 0) from all
//	swizzle    cut a random Fraction of the nodes one by one, every Step,
//	           then restore them in random order, every Step
//	heal       restore every link
//	crash      crash Count random live nodes (or Node)
//	restart    restart every crashed node (or Node)
//	rolling    crash and restart Count nodes (0: all) one after the other,
//	           each down for Down, one every Step
//	network    change the link profile: Latency, Jitter, Loss, Duplicate,
//	           Reorder, Bandwidth (fields left empty keep their value)
//	replay_intention  re-inject an older signed version of an intention
//	           at a random live node (or Node), see authz.go
//	revoke     the sim root revokes Node's key (a random live node when
//	           Node < 0), submitted at a random other live node; with
//	           Operator, the current root revokes the delegated operator
//	           key, submitted at a random live node that accepts it (of
//	           partition group Group, counted from 1, when set); with
//	           ByOperator, the operator revokes a peer it certified (Node,
//	           or a random one)
//	rotate     the current root Rk-1 signs a rotation to a new root Rk
//	           (rotation.go): Pretrust of the peers have Rk in their trust
//	           from the start (default all), Recertify before At every
//	           peer whose trust book trusts the new root is re-certified
//	           under it (else under a newer one it trusts; with Newest,
//	           under the newest it trusts) except Stale random ones (cut
//	           at the rotation);
//	           submitted at a random live peer that accepts it (of
//	           partition group Group, counted from 1, when set; or Node)
//	delegate   the current root certifies an operator key that signs the
//	           intentions issued from then on, until it is revoked
type Event struct {
	At         time.Duration
	Action     string
	Groups     int
	Sides      []float64
	Asymmetric bool
	Node       int
	Count      int
	Fraction   float64
	Step, Down time.Duration
	Link       LinkProfile
	setLink    map[string]bool

	// rotate, revoke, delegate (rotation.go).
	Group      int           // submit at a peer of this partition group (1-based); 0: any
	Pretrust   float64       // rotate: share of peers trusting the new root from the start
	Recertify  time.Duration // rotate: re-certification this long before At (0: 1 s)
	Stale      int           // rotate: peers left on their old chain (cut off)
	Newest     bool          // rotate: re-certify under the newest root a peer trusts, not the new one
	Operator   bool          // revoke: the delegated operator key
	ByOperator bool          // revoke: the operator revokes a peer it certified
}

// Expect holds the budgets. Zero means not checked, except ConvergeWithin.
type Expect struct {
	// ConvergeWithin bounds the time from the end of faults to equal
	// digests at every live peer. 0 means 60 s.
	ConvergeWithin time.Duration
	// P99Convergence bounds the p99, over updates issued while the network
	// was healthy, of the time to reach every live peer.
	P99Convergence time.Duration
	// P50Convergence likewise for the median.
	P50Convergence time.Duration
	// MaxConvergence likewise for the maximum.
	MaxConvergence time.Duration
	// MsgsPerOp bounds all messages (every class) per operation.
	MsgsPerOp float64
	// TransmissionsPerUpdate bounds payload copies sent per node per update.
	TransmissionsPerUpdate float64
}

func (sc *Scenario) setDefaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if sc.Name == "" {
		sc.Name = "scenario"
	}
	if sc.Peers <= 0 {
		sc.Peers = 10
	}
	if sc.Peers > 60000 {
		return errors.New("sim: at most 60000 peers")
	}
	if sc.Seed == 0 {
		sc.Seed = 1
	}
	switch sc.Mode {
	case "":
		sc.Mode = ModePlumtree
	case ModePlumtree, ModeMemberlist:
	default:
		return fmt.Errorf("sim: unknown mode %q", sc.Mode)
	}
	switch sc.Membership {
	case "":
		sc.Membership = MembershipSerf
	case MembershipSerf, MembershipStatic:
	default:
		return fmt.Errorf("sim: unknown membership %q", sc.Membership)
	}
	if sc.Membership == MembershipStatic && sc.Mode == ModeMemberlist {
		return errors.New("sim: the memberlist baseline needs serf membership")
	}
	def(&sc.DetectDelay, 5*time.Second)
	def(&sc.Tick, 100*time.Millisecond)
	def(&sc.Batch, 100*time.Millisecond)
	def(&sc.AEInterval, time.Second)
	def(&sc.JoinStagger, 5*time.Millisecond)
	def(&sc.Idle, 5*time.Second)
	def(&sc.Duration, 30*time.Second)
	def(&sc.Expect.ConvergeWithin, 60*time.Second)
	if sc.Workload.Keys <= 0 {
		sc.Workload.Keys = 100
	}
	if sc.Workload.Stop <= 0 || sc.Workload.Stop > sc.Duration {
		sc.Workload.Stop = sc.Duration
	}
	if sc.RetransmitMult < 0 || sc.RetransmitMult > 100 {
		return errors.New("sim: retransmit_mult must be in [0, 100]")
	}
	if sc.Skew >= 30*time.Second {
		return errors.New("sim: skew must stay below 30 s (crdt refuses records 60 s ahead)")
	}
	for i, e := range sc.Events {
		switch e.Action {
		case "partition", "isolate", "swizzle", "heal", "crash", "restart", "rolling", "network",
			"replay_intention", "revoke", "expire", "rotate", "delegate":
		default:
			return fmt.Errorf("sim: event %d: unknown action %q", i, e.Action)
		}
		if e.Node >= sc.Peers {
			return fmt.Errorf("sim: event %d: node %d out of range", i, e.Node)
		}
		if e.Action == "expire" && e.Node < 0 {
			return fmt.Errorf("sim: event %d: expire needs a node", i)
		}
		if e.Pretrust < 0 || e.Pretrust > 1 || e.Stale < 0 || e.Stale >= sc.Peers || e.Recertify < 0 {
			return fmt.Errorf("sim: event %d: pretrust must be in [0, 1], stale in [0, peers), recertify ≥ 0", i)
		}
	}
	return nil
}

// hclScenario is the file format; durations are strings ("250ms", "2m").
type hclScenario struct {
	Name       string     `hcl:"name"`
	Peers      int        `hcl:"peers"`
	Seed       int        `hcl:"seed"`
	Mode       string     `hcl:"mode"`
	Membership string     `hcl:"membership"`
	Skew       string     `hcl:"skew"`
	Services   int        `hcl:"services"`
	Tick       string     `hcl:"tick"`
	Batch      string     `hcl:"batch"`
	AEInterval string     `hcl:"anti_entropy_interval"`
	AEFailed   float64    `hcl:"anti_entropy_failed_share"`
	Retransmit int        `hcl:"retransmit_mult"`
	Fanout     int        `hcl:"fanout"`
	Probe      string     `hcl:"probe_interval"`
	Gossip     string     `hcl:"gossip_interval"`
	Stagger    string     `hcl:"join_stagger"`
	Idle       string     `hcl:"idle"`
	Duration   string     `hcl:"duration"`
	Network    []hclLink  `hcl:"-"`
	Workload   []hclWork  `hcl:"-"`
	Events     []hclEvent `hcl:"-"`
	Expect     []hclExp   `hcl:"-"`
}

type hclLink struct {
	Latency   string  `hcl:"latency"`
	Jitter    string  `hcl:"jitter"`
	Loss      float64 `hcl:"loss"`
	Duplicate float64 `hcl:"duplicate"`
	Reorder   float64 `hcl:"reorder"`
	Bandwidth string  `hcl:"bandwidth"`
}

type hclWork struct {
	Rate    float64 `hcl:"rate"`
	Reads   float64 `hcl:"reads"`
	Deletes float64 `hcl:"deletes"`
	Keys    int     `hcl:"keys"`
	Start   string  `hcl:"start"`
	Stop    string  `hcl:"stop"`
	Intents int     `hcl:"intentions"`
	Pairs   int     `hcl:"intention_pairs"`
}

type hclEvent struct {
	At         string    `hcl:"at"`
	Action     string    `hcl:"action"`
	Groups     int       `hcl:"groups"`
	Sides      []float64 `hcl:"sides"`
	Asymmetric bool      `hcl:"asymmetric"`
	Node       *int      `hcl:"node"`
	Count      int       `hcl:"count"`
	Fraction   float64   `hcl:"fraction"`
	Step       string    `hcl:"step"`
	Down       string    `hcl:"down"`
	Latency    string    `hcl:"latency"`
	Jitter     string    `hcl:"jitter"`
	Loss       *float64  `hcl:"loss"`
	Duplicate  *float64  `hcl:"duplicate"`
	Reorder    *float64  `hcl:"reorder"`
	Bandwidth  string    `hcl:"bandwidth"`
	Group      int       `hcl:"group"`
	Pretrust   *float64  `hcl:"pretrust"`
	Recertify  string    `hcl:"recertify"`
	Stale      int       `hcl:"stale"`
	Newest     bool      `hcl:"recertify_newest"`
	Operator   bool      `hcl:"operator"`
	ByOperator bool      `hcl:"by_operator"`
}

type hclExp struct {
	ConvergeWithin string  `hcl:"converge_within"`
	P50            string  `hcl:"p50_convergence"`
	P99            string  `hcl:"p99_convergence"`
	Max            string  `hcl:"max_convergence"`
	MsgsPerOp      float64 `hcl:"msgs_per_op"`
	Transmissions  float64 `hcl:"transmissions_per_update"`
}

// LoadScenario reads a scenario file (HCL).
func LoadScenario(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	sc, err := ParseScenario(string(b))
	if err != nil {
		return nil, fmt.Errorf("sim: %s: %w", path, err)
	}
	return sc, nil
}

// ParseScenario parses a scenario in HCL.
func ParseScenario(text string) (_ *Scenario, err error) {
	// The HCL v1 library panics on some malformed input (`{"\0`: an
	// escape cut short at the end of a JSON string); that is an error.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed HCL or JSON: %v", r)
		}
	}()
	// Blocks are decoded one by one: HCL v1 decodes repeated blocks into a
	// slice of structs attribute by attribute otherwise.
	file, err := hcl.Parse(text)
	if err != nil {
		return nil, err
	}
	root, ok := file.Node.(*ast.ObjectList)
	if !ok {
		return nil, errors.New("not an HCL object")
	}
	var f hclScenario
	scalars := &ast.ObjectList{}
	for _, item := range root.Items {
		if len(item.Keys) == 0 {
			continue
		}
		var err error
		switch item.Keys[0].Token.Value() {
		case "network":
			var v hclLink
			err = hcl.DecodeObject(&v, item.Val)
			f.Network = append(f.Network, v)
		case "workload":
			var v hclWork
			err = hcl.DecodeObject(&v, item.Val)
			f.Workload = append(f.Workload, v)
		case "event":
			var v hclEvent
			err = hcl.DecodeObject(&v, item.Val)
			f.Events = append(f.Events, v)
		case "expect":
			var v hclExp
			err = hcl.DecodeObject(&v, item.Val)
			f.Expect = append(f.Expect, v)
		default:
			scalars.Add(item)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", item.Pos().Line, err)
		}
	}
	if err := hcl.DecodeObject(&f, scalars); err != nil {
		return nil, err
	}
	var perr error
	dur := func(field, s string) time.Duration {
		if s == "" || perr != nil {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			perr = fmt.Errorf("%s: %w", field, err)
		}
		return d
	}
	sc := &Scenario{
		Name: f.Name, Peers: f.Peers, Seed: uint64(f.Seed), Mode: f.Mode, Membership: f.Membership,
		Skew: dur("skew", f.Skew), Services: f.Services,
		Tick: dur("tick", f.Tick), Batch: dur("batch", f.Batch),
		AEInterval: dur("anti_entropy_interval", f.AEInterval), Fanout: f.Fanout,
		AEFailedShare: f.AEFailed, RetransmitMult: f.Retransmit,
		ProbeInterval: dur("probe_interval", f.Probe), GossipInterval: dur("gossip_interval", f.Gossip),
		JoinStagger: dur("join_stagger", f.Stagger),
		Idle:        dur("idle", f.Idle), Duration: dur("duration", f.Duration),
	}
	if len(f.Network) > 1 || len(f.Workload) > 1 || len(f.Expect) > 1 {
		return nil, errors.New("at most one network, workload and expect block")
	}
	if len(f.Network) == 1 {
		l := f.Network[0]
		bw, err := parseBandwidth(l.Bandwidth)
		if err != nil {
			return nil, err
		}
		sc.Network = LinkProfile{
			Latency: dur("latency", l.Latency), Jitter: dur("jitter", l.Jitter),
			Loss: l.Loss, Duplicate: l.Duplicate, Reorder: l.Reorder, Bandwidth: bw,
		}
	}
	if len(f.Workload) == 1 {
		w := f.Workload[0]
		sc.Workload = Workload{Rate: w.Rate, Reads: w.Reads, Deletes: w.Deletes, Keys: w.Keys,
			Start: dur("start", w.Start), Stop: dur("stop", w.Stop), Intentions: w.Intents, IntentionPairs: w.Pairs}
	}
	for _, e := range f.Events {
		ev := Event{
			At: dur("at", e.At), Action: e.Action, Groups: e.Groups, Sides: e.Sides,
			Asymmetric: e.Asymmetric, Node: -1, Count: e.Count, Fraction: e.Fraction,
			Step: dur("step", e.Step), Down: dur("down", e.Down), setLink: map[string]bool{},
			Pretrust: 1, Recertify: dur("recertify", e.Recertify), Stale: e.Stale, Operator: e.Operator, Group: e.Group, Newest: e.Newest,
			ByOperator: e.ByOperator,
		}
		if e.Node != nil {
			ev.Node = *e.Node
		}
		if e.Pretrust != nil {
			ev.Pretrust = *e.Pretrust
		}
		if e.Latency != "" {
			ev.Link.Latency, ev.setLink["latency"] = dur("latency", e.Latency), true
		}
		if e.Jitter != "" {
			ev.Link.Jitter, ev.setLink["jitter"] = dur("jitter", e.Jitter), true
		}
		if e.Loss != nil {
			ev.Link.Loss, ev.setLink["loss"] = *e.Loss, true
		}
		if e.Duplicate != nil {
			ev.Link.Duplicate, ev.setLink["duplicate"] = *e.Duplicate, true
		}
		if e.Reorder != nil {
			ev.Link.Reorder, ev.setLink["reorder"] = *e.Reorder, true
		}
		if e.Bandwidth != "" {
			bw, err := parseBandwidth(e.Bandwidth)
			if err != nil {
				return nil, err
			}
			ev.Link.Bandwidth, ev.setLink["bandwidth"] = bw, true
		}
		sc.Events = append(sc.Events, ev)
	}
	if len(f.Expect) == 1 {
		x := f.Expect[0]
		sc.Expect = Expect{
			ConvergeWithin: dur("converge_within", x.ConvergeWithin),
			P50Convergence: dur("p50_convergence", x.P50), P99Convergence: dur("p99_convergence", x.P99),
			MaxConvergence: dur("max_convergence", x.Max), MsgsPerOp: x.MsgsPerOp,
			TransmissionsPerUpdate: x.Transmissions,
		}
	}
	if perr != nil {
		return nil, perr
	}
	if err := sc.setDefaults(); err != nil {
		return nil, err
	}
	return sc, nil
}

// parseBandwidth reads "10MB", "512KB", "1000" (bytes per second).
func parseBandwidth(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	s = strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "/S")
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bandwidth %q: want e.g. 10MB", s)
	}
	return int64(v * float64(mult)), nil
}
