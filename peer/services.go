package peer

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/peerd/peerd/crdt"
)

// The local registry holds the services and checks this agent runs: their
// full definitions (which the replica does not carry: intervals, URLs,
// thresholds) and the live state of their check runners. Every change is
// written to the replica through a.commit, so it is durable and gossiped;
// the definitions are also kept in DataDir/local-definitions.json so that
// check runners restart with the agent.

// LocalOptions are the agent settings of the local registry and the HTTP
// API. Zero values: script checks refused, no token required.
type LocalOptions struct {
	// EnableScriptChecks allows checks that run programs (Consul's
	// enable_script_checks).
	EnableScriptChecks bool
	// HTTPToken, when set, must accompany every HTTP API request as
	// ?token=, X-Consul-Token or Authorization: Bearer.
	HTTPToken string
	// EnableDebug serves Go's profiler (net/http/pprof) under /debug/pprof/
	// on the HTTP API, as Consul's enable_debug does (behind HTTPToken when
	// one is set).
	EnableDebug bool
}

// SetLocalOptions sets the registry and API options; call it before Start.
func (a *Agent) SetLocalOptions(o LocalOptions) {
	a.local.opts.Store(&o)
}

// options returns the registry and API options (zero when never set).
func (l *localState) options() LocalOptions {
	if o := l.opts.Load(); o != nil {
		return *o
	}
	return LocalOptions{}
}

// Sources of a local definition: the HTTP API persists its registrations;
// config-file definitions are replaced by ReloadServices.
const (
	sourceAPI    = "api"
	sourceConfig = "config"
)

// localState is the local registry. mu guards every field and is held
// across the replica commits of a registration, so that a deregistration
// and a check result never interleave (a result would revive the check).
type localState struct {
	opts   atomic.Pointer[LocalOptions]
	reload atomic.Pointer[func() error]

	members memberWatch // membership epoch for blocking queries (api_block.go)

	mu       sync.Mutex
	started  bool
	services map[string]*localService // by service ID
	checks   map[string]*localCheck   // by check ID
	// batch, when non-nil, collects the replica writes of one registration
	// or deregistration (batchLocked), committed together as one delta.
	batch []mutation

	returnedOnce sync.Once
	returnedCh   chan struct{} // records of this node's origin came back (reincarnation.go)
	forgotOnce   sync.Once
	forgotCh     chan struct{} // peers may have forgotten this node's records (forgotten.go)
}

// forgot is the channel mayBeForgotten signals.
func (l *localState) forgot() chan struct{} {
	l.forgotOnce.Do(func() { l.forgotCh = make(chan struct{}, 1) })
	return l.forgotCh
}

// returned is the channel ownRecordsReturned signals; it exists from the
// first call on, whichever comes first.
func (l *localState) returned() chan struct{} {
	l.returnedOnce.Do(func() { l.returnedCh = make(chan struct{}, 1) })
	return l.returnedCh
}

// mutation is one replica write, run under the commit lock.
type mutation = func(now time.Time) (*crdt.Delta, error)

type localService struct {
	Def    ServiceDefinition
	Source string
	// SidecarOf is the ID of the service whose registration declared this
	// one as its connect.sidecar_service: deregistering that service
	// removes this one too, as Consul does (LocallyRegisteredAsSidecar).
	SidecarOf string `json:",omitempty"`
}

// localCheck is one check this agent owns and, unless it is TTL or
// maintenance, runs.
type localCheck struct {
	Def         CheckDefinition
	Source      string
	Maintenance bool `json:",omitempty"`

	// Runtime state, guarded by localState.mu.
	serviceName   string
	serviceTags   []string
	status        string
	output        string
	written       time.Time // last replica write
	outputPending bool      // an output-only change not yet written
	successes     int
	failures      int
	criticalSince time.Time
	stop          context.CancelFunc
	ttl           *time.Timer
	flush         *time.Timer
}

// persisted is the on-disk form of the registry.
type persisted struct {
	Services []*localService
	Checks   []*localCheck
}

func (a *Agent) definitionsFile() string {
	return filepath.Join(a.cfg.DataDir, "local-definitions.json")
}

// startLocal loads the persisted definitions, reconciles this node's
// records in the replica with them and starts the check runners. Called
// by Start once the commit queue runs.
func (a *Agent) startLocal() error {
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	l.services = map[string]*localService{}
	l.checks = map[string]*localCheck{}
	l.started = true
	b, err := os.ReadFile(a.definitionsFile())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("peer: local definitions: %w", err)
	}
	if err == nil {
		var p persisted
		if err := json.Unmarshal(b, &p); err != nil {
			a.log.Warn("local definitions unreadable; starting with none", "file", a.definitionsFile(), "err", err)
		}
		for _, s := range p.Services {
			if s != nil && s.Def.ID != "" {
				l.services[s.Def.ID] = s
			}
		}
		for _, c := range p.Checks {
			if c != nil && c.Def.ID != "" {
				l.checks[c.Def.ID] = c
			}
		}
	}
	// Drop from the replica what the registry no longer has, and republish
	// what it lacks.
	for _, e := range a.replica.NodeServices(a.id) {
		if _, ok := l.services[e.Service.ID]; !ok {
			if err := a.commitDelete(crdt.KindService, e.Service.ID); err != nil {
				return err
			}
		}
	}
	held := map[string]crdt.Check{}
	for _, c := range a.replica.Checks(crdt.CheckFilter{Origin: a.id}) {
		if _, ok := l.checks[c.Check.ID]; !ok {
			if err := a.commitDelete(crdt.KindCheck, c.Check.ID); err != nil {
				return err
			}
			continue
		}
		held[c.Check.ID] = c.Check
	}
	for _, s := range l.services {
		if err := a.publishServiceLocked(s); err != nil {
			return err
		}
	}
	for _, c := range l.checks {
		prev, ok := held[c.Def.ID]
		if ok {
			c.status, c.output = prev.Status, prev.Output
		}
		if err := a.startCheckLocked(c); err != nil {
			return err
		}
	}
	a.wg.Add(3)
	go func() { defer a.wg.Done(); a.reapCritical() }()
	go func() { defer a.wg.Done(); a.watchMembership() }()
	go func() { defer a.wg.Done(); a.watchReturnedRecords() }() // reincarnation.go
	return nil
}

// saveLocked writes the registry to disk (atomically: temp file + rename).
func (a *Agent) saveLocked() error {
	l := &a.local
	var p persisted
	for _, s := range l.services {
		p.Services = append(p.Services, s)
	}
	for _, c := range l.checks {
		p.Checks = append(p.Checks, c)
	}
	sort.Slice(p.Services, func(i, j int) bool { return p.Services[i].Def.ID < p.Services[j].Def.ID })
	sort.Slice(p.Checks, func(i, j int) bool { return p.Checks[i].Def.ID < p.Checks[j].Def.ID })
	b, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("peer: local definitions: %w", err)
	}
	tmp := a.definitionsFile() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("peer: local definitions: %w", err)
	}
	if err := os.Rename(tmp, a.definitionsFile()); err != nil {
		return fmt.Errorf("peer: local definitions: %w", err)
	}
	return nil
}

func (a *Agent) commitDelete(k crdt.Kind, id string) error {
	return a.commitLocked(func(now time.Time) (*crdt.Delta, error) {
		var d *crdt.Delta
		var err error
		if k == crdt.KindService {
			d, err = a.replica.DeleteService(id, now)
		} else {
			d, err = a.replica.DeleteCheck(id, now)
		}
		if errors.Is(err, crdt.ErrNotFound) {
			return nil, nil
		}
		return d, err
	})
}

// commitLocked commits one replica write of the registry, or adds it to
// the batch being collected. l.mu must be held.
func (a *Agent) commitLocked(m mutation) error {
	if l := &a.local; l.batch != nil {
		l.batch = append(l.batch, m)
		return nil
	}
	return a.commit(a.ctx, m)
}

// batchLocked runs f with the registry's replica writes collected, then
// commits them as one delta: a service and its checks (or their removal)
// reach every other agent together, never one without the other — Consul
// writes a registration in one transaction, and watchers such as
// consul-template and Traefik act on the states in between. What f queued
// is committed even when f fails part-way. l.mu must be held.
func (a *Agent) batchLocked(f func() error) error {
	l := &a.local
	if l.batch != nil {
		return f() // already collecting
	}
	l.batch = []mutation{}
	err := f()
	muts := l.batch
	l.batch = nil
	if len(muts) == 0 {
		return err
	}
	var mutErr error
	cerr := a.commit(a.ctx, func(now time.Time) (*crdt.Delta, error) {
		var all *crdt.Delta
		for _, m := range muts {
			d, err := m(now)
			if err != nil {
				// A refused write changed nothing; the others stand.
				mutErr = cmp.Or(mutErr, err)
				continue
			}
			if d == nil {
				continue
			}
			if all == nil {
				all = &crdt.Delta{}
			}
			all.Entries = append(all.Entries, d.Entries...)
		}
		return all, nil
	})
	if err != nil {
		return err
	}
	if cerr != nil {
		return cerr
	}
	return mutErr
}

// publishServiceLocked writes the service record when the replica's
// differs.
func (a *Agent) publishServiceLocked(s *localService) error {
	want := s.Def.toCRDT()
	for _, e := range a.replica.NodeServices(a.id) {
		if e.Service.ID == want.ID && serviceEqual(e.Service, want) {
			return nil
		}
	}
	return a.commitLocked(func(now time.Time) (*crdt.Delta, error) { return a.replica.PutService(want, now) })
}

func serviceEqual(x, y crdt.Service) bool {
	bx, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return string(bx) == string(by)
}

// errRegistryNotRunning is returned before Start or after Close.
var errRegistryNotRunning = errors.New("peer: the agent is not running")

// mayPublish refuses a service outside this node's certificate.
func (a *Agent) mayPublish(name string) error {
	caps, err := a.trust.capsOf(a.id)
	if err != nil {
		return errorf(http.StatusForbidden, "this node's certificate is not valid: %v", err)
	}
	if !caps.MayPublishService(name) {
		return errorf(http.StatusForbidden,
			"this node's certificate does not allow publishing service %q (allowed: %v); issue a certificate with -services covering it",
			name, caps.Services)
	}
	return nil
}

// RegisterService validates def, checks that this node may publish it and
// registers it with its checks (and its sidecar), as
// PUT /v1/agent/service/register does. Errors for the caller's input are
// HTTP errors (400, 403).
func (a *Agent) RegisterService(ctx context.Context, def ServiceDefinition, replaceChecks bool) error {
	return a.registerService(def, sourceAPI, replaceChecks)
}

func (a *Agent) registerService(def ServiceDefinition, source string, replaceChecks bool) error {
	l := &a.local
	allow := l.options().EnableScriptChecks
	if err := def.validate(allow); err != nil {
		return errorf(http.StatusBadRequest, "Invalid service: %v", err)
	}
	if err := def.checkDatacenter(a.cfg.Datacenter); err != nil {
		return errorf(http.StatusBadRequest, "Invalid service: %v", err)
	}
	defs := []ServiceDefinition{def}
	if def.Connect != nil && def.Connect.SidecarService != nil {
		sc := *def.Connect.SidecarService
		defs = append(defs, sc)
	}
	for _, d := range defs {
		if err := a.mayPublish(d.Name); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		return errRegistryNotRunning
	}
	err := a.batchLocked(func() error {
		for i, d := range defs {
			if err := a.putServiceLocked(d, source, replaceChecks); err != nil {
				return err
			}
			if i > 0 {
				l.services[d.ID].SidecarOf = def.ID
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return a.saveLocked()
}

// putServiceLocked registers one service definition (without its sidecar).
func (a *Agent) putServiceLocked(d ServiceDefinition, source string, replaceChecks bool) error {
	l := &a.local
	checks := d.Checks
	d.Checks = nil
	if d.Connect != nil && d.Connect.SidecarService != nil {
		// The sidecar is registered as a service of its own.
		cp := *d.Connect
		cp.SidecarService = nil
		d.Connect = &cp
		if !cp.Native {
			d.Connect = nil
		}
	}
	s := &localService{Def: d, Source: source}
	s.Def.Checks = checks
	l.services[d.ID] = s
	if err := a.publishServiceLocked(s); err != nil {
		return err
	}
	keep := map[string]bool{}
	for i := range checks {
		c := checks[i]
		keep[c.ID] = true
		if err := a.putCheckLocked(c, source, false); err != nil {
			return err
		}
	}
	if replaceChecks {
		for id, c := range l.checks {
			if c.Def.ServiceID == d.ID && !keep[id] && !c.Maintenance {
				if err := a.removeCheckLocked(id); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// DeregisterService removes a local service and its checks, and the
// sidecar its registration declared (with the sidecar's checks).
func (a *Agent) DeregisterService(ctx context.Context, id string) error {
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		return errRegistryNotRunning
	}
	if _, ok := l.services[id]; !ok {
		return errorf(http.StatusNotFound, "Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id)
	}
	ids := []string{id}
	for sid, s := range l.services {
		if s.SidecarOf == id && sid != id {
			ids = append(ids, sid)
		}
	}
	err := a.batchLocked(func() error {
		for _, sid := range ids {
			if err := a.removeServiceLocked(sid); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return a.saveLocked()
}

func (a *Agent) removeServiceLocked(id string) error {
	l := &a.local
	for cid, c := range l.checks {
		if c.Def.ServiceID == id {
			if err := a.removeCheckLocked(cid); err != nil {
				return err
			}
		}
	}
	delete(l.services, id)
	return a.commitDelete(crdt.KindService, id)
}

// RegisterCheck registers a standalone check (node-level, or attached to a
// local service by ServiceID), as PUT /v1/agent/check/register does.
func (a *Agent) RegisterCheck(ctx context.Context, def CheckDefinition) error {
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		return errRegistryNotRunning
	}
	if err := validateNodeCheck(&def, l.options().EnableScriptChecks); err != nil {
		return errorf(http.StatusBadRequest, "Invalid check: %v", err)
	}
	if def.ServiceID != "" {
		if _, ok := l.services[def.ServiceID]; !ok {
			return errorf(http.StatusBadRequest, "ServiceID %q does not exist", def.ServiceID)
		}
	}
	if err := a.putCheckLocked(def, sourceAPI, false); err != nil {
		return err
	}
	return a.saveLocked()
}

// DeregisterCheck removes a local check.
func (a *Agent) DeregisterCheck(ctx context.Context, id string) error {
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		return errRegistryNotRunning
	}
	if _, ok := l.checks[id]; !ok {
		return errorf(http.StatusNotFound, "Unknown check ID %q. Ensure that the check ID is passed, not the check name.", id)
	}
	if err := a.removeCheckLocked(id); err != nil {
		return err
	}
	return a.saveLocked()
}

// putCheckLocked adds or replaces a check; an existing check keeps its
// current status, as in Consul.
func (a *Agent) putCheckLocked(def CheckDefinition, source string, maint bool) error {
	l := &a.local
	c := &localCheck{Def: def, Source: source, Maintenance: maint, status: def.Status}
	if old, ok := l.checks[def.ID]; ok {
		old.halt()
		if !maint {
			c.status, c.output = old.status, old.output
		}
	}
	l.checks[def.ID] = c
	return a.startCheckLocked(c)
}

func (a *Agent) removeCheckLocked(id string) error {
	l := &a.local
	if c, ok := l.checks[id]; ok {
		c.halt()
		delete(l.checks, id)
	}
	return a.commitDelete(crdt.KindCheck, id)
}

// halt stops a check's runner and timers.
func (c *localCheck) halt() {
	if c.stop != nil {
		c.stop()
		c.stop = nil
	}
	if c.ttl != nil {
		c.ttl.Stop()
	}
	if c.flush != nil {
		c.flush.Stop()
	}
}

// startCheckLocked fills the check's service fields, writes its record and
// starts its runner.
func (a *Agent) startCheckLocked(c *localCheck) error {
	l := &a.local
	if c.status == "" {
		c.status = crdt.StatusCritical
	}
	if s, ok := l.services[c.Def.ServiceID]; ok {
		c.serviceName, c.serviceTags = s.Def.Name, s.Def.Tags
	}
	if err := a.writeCheckLocked(c, time.Now()); err != nil {
		return err
	}
	if c.status == crdt.StatusCritical {
		c.criticalSince = time.Now()
	}
	if c.Maintenance {
		return nil
	}
	switch c.Def.Type() {
	case checkTypeTTL:
		id := c.Def.ID
		c.ttl = time.AfterFunc(time.Duration(c.Def.TTL), func() { a.ttlExpired(id, c) })
	default:
		ctx, cancel := context.WithCancel(a.ctx)
		c.stop = cancel
		r := newCheckRunner(c.Def, a.log)
		id := c.Def.ID
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			r.run(ctx, func(res checkResult) { a.runnerResult(id, c, res) })
		}()
	}
	return nil
}

// writeCheckLocked writes the check's current state to the replica when it
// differs from what the replica holds.
func (a *Agent) writeCheckLocked(c *localCheck, now time.Time) error {
	rec := c.record()
	for _, e := range a.replica.Checks(crdt.CheckFilter{Origin: a.id, ServiceID: c.Def.ServiceID}) {
		if e.Check.ID == rec.ID && checkEqual(e.Check, rec) {
			c.written, c.outputPending = now, false
			return nil
		}
	}
	return a.writeCheckForcedLocked(c, now)
}

// writeCheckForcedLocked writes the check's record even when the replica
// holds an equal one (reincarnation.go).
func (a *Agent) writeCheckForcedLocked(c *localCheck, now time.Time) error {
	rec := c.record()
	err := a.commitLocked(func(now time.Time) (*crdt.Delta, error) { return a.replica.PutCheck(rec, now) })
	if err == nil {
		c.written, c.outputPending = now, false
	}
	return err
}

// record is the replica record of the check's current state.
func (c *localCheck) record() crdt.Check {
	return crdt.Check{
		ID: c.Def.ID, Name: c.Def.Name, ServiceID: c.Def.ServiceID, ServiceName: c.serviceName,
		Status: c.status, Output: c.output, Notes: c.Def.Notes, ServiceTags: c.serviceTags, Type: c.checkType(),
	}
}

func (c *localCheck) checkType() string {
	if c.Maintenance {
		return checkTypeMaint
	}
	return c.Def.Type()
}

func checkEqual(x, y crdt.Check) bool {
	return x.ID == y.ID && x.Name == y.Name && x.ServiceID == y.ServiceID && x.ServiceName == y.ServiceName &&
		x.Status == y.Status && x.Output == y.Output && x.Notes == y.Notes && x.Type == y.Type &&
		slices.Equal(x.ServiceTags, y.ServiceTags)
}

// maxCheckOutput caps a check's output, as Consul's default
// check_output_max_size does.
const maxCheckOutput = 4096

// checkOutputInterval rate-limits replica writes of output-only changes
// (the status did not change), so that a check whose output varies on
// every run (a timestamp) does not flood gossip. Status changes are
// written at once. Consul's equivalent is check_update_interval.
var checkOutputInterval = 30 * time.Second

// updateCheckLocked applies a new status and output and writes what must
// be written. Caller holds l.mu.
func (a *Agent) updateCheckLocked(c *localCheck, status, output string, now time.Time) error {
	if len(output) > maxCheckOutput {
		output = output[:maxCheckOutput]
	}
	if status == crdt.StatusCritical && c.status != crdt.StatusCritical {
		c.criticalSince = now
	}
	if status != crdt.StatusCritical {
		c.criticalSince = time.Time{}
	}
	statusChanged := status != c.status
	outputChanged := output != c.output
	c.status, c.output = status, output
	switch {
	case statusChanged:
		return a.writeCheckLocked(c, now)
	case !outputChanged:
		return nil
	case now.Sub(c.written) >= checkOutputInterval:
		return a.writeCheckLocked(c, now)
	}
	if !c.outputPending {
		c.outputPending = true
		id := c.Def.ID
		c.flush = time.AfterFunc(c.written.Add(checkOutputInterval).Sub(now), func() {
			l := &a.local
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.checks[id] != c || !c.outputPending || a.ctx.Err() != nil {
				return
			}
			if err := a.writeCheckLocked(c, time.Now()); err != nil {
				a.log.Warn("check output not written", "check", id, "err", err)
			}
		})
	}
	return nil
}

// runnerResult applies a runner's result through the success/failure
// thresholds (SuccessBeforePassing, FailuresBeforeWarning,
// FailuresBeforeCritical).
func (a *Agent) runnerResult(id string, c *localCheck, res checkResult) {
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.checks[id] != c || a.ctx.Err() != nil {
		return // replaced or removed meanwhile
	}
	status := thresholdStatus(c, res.status)
	if err := a.updateCheckLocked(c, status, res.output, time.Now()); err != nil && a.ctx.Err() == nil {
		a.log.Warn("check result not written", "check", id, "err", err)
	}
}

// thresholdStatus counts consecutive successes and failures and returns the
// status to report, as Consul's StatusHandler does.
func thresholdStatus(c *localCheck, got string) string {
	d := &c.Def
	if got == crdt.StatusPassing {
		c.successes++
		c.failures = 0
		if c.successes >= d.SuccessBeforePassing {
			return crdt.StatusPassing
		}
		return c.status
	}
	c.successes = 0
	c.failures++
	if got == crdt.StatusWarning && c.failures >= d.FailuresBeforeWarning {
		return crdt.StatusWarning
	}
	if c.failures >= d.FailuresBeforeCritical {
		return got
	}
	if c.failures >= d.FailuresBeforeWarning {
		return crdt.StatusWarning
	}
	return c.status
}

func (a *Agent) ttlExpired(id string, c *localCheck) {
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.checks[id] != c || a.ctx.Err() != nil {
		return
	}
	out := "TTL expired"
	if c.output != "" {
		out = "TTL expired (last output before timeout follows): " + c.output
	}
	if err := a.updateCheckLocked(c, crdt.StatusCritical, out, time.Now()); err != nil && a.ctx.Err() == nil {
		a.log.Warn("TTL expiry not written", "check", id, "err", err)
	}
}

// UpdateTTLCheck sets the status of a TTL check and restarts its timer,
// as /v1/agent/check/pass|warn|fail|update do.
func (a *Agent) UpdateTTLCheck(ctx context.Context, id, status, output string) error {
	switch status {
	case crdt.StatusPassing, crdt.StatusWarning, crdt.StatusCritical:
	default:
		return errorf(http.StatusBadRequest, "Invalid check status %q (want passing, warning or critical)", status)
	}
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	c, ok := l.checks[id]
	if !ok {
		return errorf(http.StatusNotFound, "Unknown check ID %q. Ensure that the check ID is passed, not the check name.", id)
	}
	if c.Def.Type() != checkTypeTTL {
		return errorf(http.StatusBadRequest, "Check %q is not a TTL check", id)
	}
	if c.ttl != nil {
		c.ttl.Reset(time.Duration(c.Def.TTL))
	}
	return a.updateCheckLocked(c, status, output, time.Now())
}

// reapCritical deregisters services whose check has been critical for
// longer than its DeregisterCriticalServiceAfter.
func (a *Agent) reapCritical() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case now := <-t.C:
			l := &a.local
			l.mu.Lock()
			changed := false
			for _, c := range l.checks {
				d := time.Duration(c.Def.DeregisterCriticalServiceAfter)
				if d <= 0 || c.Def.ServiceID == "" || c.status != crdt.StatusCritical || c.criticalSince.IsZero() {
					continue
				}
				if now.Sub(c.criticalSince) < d {
					continue
				}
				if _, ok := l.services[c.Def.ServiceID]; !ok {
					continue
				}
				a.log.Info("deregistering service: check critical too long", "service", c.Def.ServiceID, "check", c.Def.ID, "after", d)
				if err := a.removeServiceLocked(c.Def.ServiceID); err != nil {
					a.log.Warn("deregistering a critical service failed", "service", c.Def.ServiceID, "err", err)
				}
				changed = true
				break // the map changed
			}
			if changed {
				if err := a.saveLocked(); err != nil {
					a.log.Warn("saving local definitions", "err", err)
				}
			}
			l.mu.Unlock()
		}
	}
}

// stopLocal stops every check runner and timer (Close).
func (a *Agent) stopLocal() {
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.checks {
		c.halt()
	}
	l.started = false
}

// Maintenance check IDs and texts, as Consul names them.
const (
	nodeMaintID       = "_node_maintenance"
	serviceMaintIDPfx = "_service_maintenance:"
	defaultMaintNotes = "Maintenance mode is enabled for this node, but no reason was provided. This is a default message."
	defaultSvcNotes   = "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
)

// SetNodeMaintenance puts the node in or out of maintenance mode: a
// critical _node_maintenance check.
func (a *Agent) SetNodeMaintenance(ctx context.Context, enable bool, reason string) error {
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		return errRegistryNotRunning
	}
	if !enable {
		if _, ok := l.checks[nodeMaintID]; !ok {
			return nil
		}
		if err := a.removeCheckLocked(nodeMaintID); err != nil {
			return err
		}
		return a.saveLocked()
	}
	if reason == "" {
		reason = defaultMaintNotes
	}
	def := CheckDefinition{ID: nodeMaintID, Name: "Node Maintenance Mode", Notes: reason, Status: crdt.StatusCritical}
	if err := a.putCheckLocked(def, sourceAPI, true); err != nil {
		return err
	}
	return a.saveLocked()
}

// SetServiceMaintenance puts one local service in or out of maintenance.
func (a *Agent) SetServiceMaintenance(ctx context.Context, serviceID string, enable bool, reason string) error {
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		return errRegistryNotRunning
	}
	if _, ok := l.services[serviceID]; !ok {
		return errorf(http.StatusNotFound, "No service registered with ID %q", serviceID)
	}
	id := serviceMaintIDPfx + serviceID
	if !enable {
		if _, ok := l.checks[id]; !ok {
			return nil
		}
		if err := a.removeCheckLocked(id); err != nil {
			return err
		}
		return a.saveLocked()
	}
	if reason == "" {
		reason = defaultSvcNotes
	}
	def := CheckDefinition{ID: id, Name: "Service Maintenance Mode", Notes: reason, ServiceID: serviceID, Status: crdt.StatusCritical}
	if err := a.putCheckLocked(def, sourceAPI, true); err != nil {
		return err
	}
	return a.saveLocked()
}

// ReloadServices replaces the services and checks defined in config files
// with defs and checks (what the files define now); API registrations are
// kept. Everything is validated first: on error nothing changes.
func (a *Agent) ReloadServices(defs []ServiceDefinition, checks []CheckDefinition) error {
	l := &a.local
	allow := l.options().EnableScriptChecks
	var all []ServiceDefinition
	sidecarOf := map[string]string{} // sidecar ID → its service's ID
	for _, d := range defs {
		if err := d.validate(allow); err != nil {
			return fmt.Errorf("peer: service %q: %w", d.Name, err)
		}
		if err := d.checkDatacenter(a.cfg.Datacenter); err != nil {
			return fmt.Errorf("peer: service %q: %w", d.Name, err)
		}
		all = append(all, d)
		if d.Connect != nil && d.Connect.SidecarService != nil {
			all = append(all, *d.Connect.SidecarService)
			sidecarOf[d.Connect.SidecarService.ID] = d.ID
		}
	}
	for _, d := range all {
		if err := a.mayPublish(d.Name); err != nil {
			return fmt.Errorf("peer: service %q: %w", d.Name, err)
		}
	}
	for i := range checks {
		if err := validateNodeCheck(&checks[i], allow); err != nil {
			return fmt.Errorf("peer: check %q: %w", checks[i].ID, err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.started {
		return errRegistryNotRunning
	}
	want := map[string]bool{}
	for _, d := range all {
		want[d.ID] = true
	}
	wantCheck := map[string]bool{}
	for _, c := range checks {
		wantCheck[c.ID] = true
	}
	err := a.batchLocked(func() error { return a.reloadLocked(all, sidecarOf, checks, want, wantCheck) })
	if err != nil {
		return err
	}
	return a.saveLocked()
}

// reloadLocked is ReloadServices' replacement of the config-file
// definitions, inside one batch.
func (a *Agent) reloadLocked(all []ServiceDefinition, sidecarOf map[string]string, checks []CheckDefinition, want, wantCheck map[string]bool) error {
	l := &a.local
	for id, s := range l.services {
		if s.Source == sourceConfig && !want[id] {
			if err := a.removeServiceLocked(id); err != nil {
				return err
			}
		}
	}
	for id, c := range l.checks {
		if c.Source == sourceConfig && c.Def.ServiceID == "" && !wantCheck[id] {
			if err := a.removeCheckLocked(id); err != nil {
				return err
			}
		}
	}
	for _, d := range all {
		if err := a.putServiceLocked(d, sourceConfig, true); err != nil {
			return err
		}
		l.services[d.ID].SidecarOf = sidecarOf[d.ID]
	}
	for _, c := range checks {
		if c.ServiceID != "" {
			if _, ok := l.services[c.ServiceID]; !ok {
				return fmt.Errorf("peer: check %q: service %q is not registered", c.ID, c.ServiceID)
			}
		}
		if err := a.putCheckLocked(c, sourceConfig, false); err != nil {
			return err
		}
	}
	return nil
}
