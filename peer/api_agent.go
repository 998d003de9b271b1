package peer

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"unicode"

	"github.com/peerd/peerd/gossip"
)

// apiMember is Consul's /v1/agent/members entry.
type apiMember struct {
	Name        string
	Addr        string
	Port        uint16
	Tags        map[string]string
	Status      int
	ProtocolMin int
	ProtocolMax int
	ProtocolCur int
	DelegateMin int
	DelegateMax int
	DelegateCur int
}

// Tag values added to every member, as Consul clients look for them.
const trustTag = "peerd_trust"

func (a *Agent) memberList() []apiMember {
	if a.members == nil {
		return nil
	}
	admitted := map[string]bool{a.cfg.NodeName: true}
	for _, m := range a.members.Admitted() {
		admitted[m.Name] = true
	}
	var out []apiMember
	for _, m := range a.members.Members() {
		if m.Status != gossip.StatusAlive && !admitted[m.Name] {
			// Admitted() lists alive members only: judge a member that
			// left or failed by its certificate, so that it shows as
			// left/failed rather than untrusted.
			admitted[m.Name] = a.admit(m)
		}
		tags := map[string]string{"role": "node", "dc": a.cfg.Datacenter, "vsn": "2", "build": Version}
		for k, v := range m.Tags {
			tags[k] = v
		}
		status := int(m.Status)
		tags[trustTag] = "verified"
		if !admitted[m.Name] {
			// Not (yet) trusted: listed so operators see it, but never as
			// alive, since nothing of it is used.
			tags[trustTag] = "unverified"
			if m.Status == gossip.StatusAlive {
				status = int(gossip.StatusNone)
			}
		}
		out = append(out, apiMember{
			Name: m.Name, Addr: m.Addr.String(), Port: m.Port, Tags: tags, Status: status,
			ProtocolMin: 1, ProtocolMax: 5, ProtocolCur: 2, DelegateMin: 2, DelegateMax: 5, DelegateCur: 4,
		})
	}
	return out
}

func (s *apiServer) agentMembers(w http.ResponseWriter, r *http.Request, _ string) error {
	return writeJSON(w, s.a.memberList())
}

func (s *apiServer) agentSelf(w http.ResponseWriter, r *http.Request, _ string) error {
	a := s.a
	var member apiMember
	for _, m := range a.memberList() {
		if m.Name == a.cfg.NodeName {
			member = m
		}
	}
	return writeJSON(w, map[string]any{
		"Config": map[string]any{
			"Datacenter": a.cfg.Datacenter,
			"NodeName":   a.cfg.NodeName,
			"NodeID":     a.id,
			"Server":     false,
			"Version":    Version,
			"Revision":   "peerd",
			"Domain":     a.cfg.Domain,
		},
		"Member": member,
		"Meta":   map[string]string{"peerd-version": Version},
		"Stats":  a.infoStats(),
	})
}

// infoStats is what `peerd info` prints: replica, dissemination and
// anti-entropy counters, by section.
func (a *Agent) infoStats() map[string]map[string]string {
	d := a.replica.Digest()
	st := map[string]map[string]string{
		"agent": {
			"node":    a.cfg.NodeName,
			"node_id": a.id,
			"version": Version,
		},
		"replica": {
			"digest":           fmt.Sprintf("%x", d[:8]),
			"index":            fmt.Sprint(a.replica.Index()),
			"local_writes":     fmt.Sprint(a.stats.localWrites.Load()),
			"merged_entries":   fmt.Sprint(a.stats.mergedEntries.Load()),
			"duplicates":       fmt.Sprint(a.stats.duplicate.Load()),
			"rejected_entries": fmt.Sprint(a.stats.rejectedEntries.Load()),
			"bad_payloads":     fmt.Sprint(a.stats.badPayloads.Load()),
			"snapshots":        fmt.Sprint(a.stats.snapshots.Load()),
			"gc_collected":     fmt.Sprint(a.stats.collected.Load()),
			"rejected_reasons": formatReasons(a.replica.Rejected()),
			"revocations":      a.revocationSummary(),
		},
		"dissemination": {
			"broadcasts":      fmt.Sprint(a.stats.broadcasts.Load()),
			"broadcast_bytes": fmt.Sprint(a.stats.broadcastBytes.Load()),
			"deliveries":      fmt.Sprint(a.stats.deliveries.Load()),
		},
	}
	if a.driver != nil {
		ds := a.driver.Stats()
		st["dissemination"]["neighbors"] = fmt.Sprint(len(a.driver.Neighbors()))
		st["dissemination"]["send_errors"] = fmt.Sprint(ds.SendErrors)
		st["dissemination"]["send_dropped"] = fmt.Sprint(ds.SendDropped)
		st["dissemination"]["decode_errors"] = fmt.Sprint(ds.DecodeErrors)
		addCounters(st["dissemination"], "plumtree_", ds.Plumtree)
	}
	if a.ae != nil {
		st["anti_entropy"] = a.antiEntropyStats()
	}
	if a.members != nil {
		st["serf"] = map[string]string{
			"members":        fmt.Sprint(a.members.NumMembers()),
			"admitted":       fmt.Sprint(len(a.members.Admitted())),
			"dropped_events": fmt.Sprint(a.members.DroppedEvents()),
		}
	}
	if a.tr != nil {
		st["transport"] = map[string]string{}
		addCounters(st["transport"], "", a.tr.Stats())
	}
	if fan := LogFanOf(a.log); fan != nil {
		st["monitor"] = map[string]string{
			"subscribers":   fmt.Sprint(fan.Subscribers()),
			"dropped_lines": fmt.Sprint(fan.Dropped()),
		}
	}
	st["connect"] = a.connectStats() // data plane (proxy.go)
	// Published Connect CA certificates refused (connect_ca_state.go).
	st["connect"]["ca_invalid_certificates"] = fmt.Sprint(a.ca.invalid.Load())
	st["events"] = a.EventStats()       // user events (events.go)
	st["certificate"] = a.certSummary() // certs.go
	return st
}

// addCounters adds the integer fields of the struct v to dst, one key
// each (prefix + snake_case field name), so that `peerd info` shows them
// one per line and /v1/agent/metrics exports them as gauges.
func addCounters(dst map[string]string, prefix string, v any) {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Struct {
		return
	}
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Type().Field(i)
		if !f.IsExported() {
			continue
		}
		switch fv := rv.Field(i); fv.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			dst[prefix+snakeCase(f.Name)] = fmt.Sprint(fv.Int())
		case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			dst[prefix+snakeCase(f.Name)] = fmt.Sprint(fv.Uint())
		}
	}
}

// snakeCase turns a Go field name into snake_case: "PayloadBytesSent" →
// "payload_bytes_sent", "IHavesSent" → "i_haves_sent".
func snakeCase(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			prevLower := i > 0 && !unicode.IsUpper(rs[i-1])
			nextLower := i > 0 && i+1 < len(rs) && unicode.IsLower(rs[i+1])
			if prevLower || nextLower {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func formatReasons(m map[string]uint64) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	return strings.Join(parts, ",")
}

func (s *apiServer) agentInfo(w http.ResponseWriter, r *http.Request, _ string) error {
	return writeJSON(w, s.a.infoStats())
}

func (s *apiServer) agentJoin(w http.ResponseWriter, r *http.Request, addr string) error {
	if addr == "" {
		return errorf(http.StatusBadRequest, "Missing address to join: PUT /v1/agent/join/<address>")
	}
	n, err := s.a.members.Join(withPort([]string{addr}, s.a.cfg.SerfPort))
	if err != nil && n == 0 {
		return errorf(http.StatusInternalServerError, "join %s: %v", addr, err)
	}
	return nil
}

func (s *apiServer) agentLeave(w http.ResponseWriter, r *http.Request, _ string) error {
	if err := s.a.leaveFromAPI(); err != nil {
		return errorf(http.StatusInternalServerError, "leave: %v", err)
	}
	return nil
}

// agentForceLeave is Consul's force-leave: a failed member becomes left on
// every agent (its services are hidden, as for a graceful leave, and its
// records are forgotten when serf reaps it); ?prune erases it from the
// member list at once (the reap follows right away). An alive member
// refutes the leave and stays; pruning it is refused, unlike Consul
// (gossip.Membership.ForceLeave says why). ?wan is accepted and ignored:
// there is one pool.
func (s *apiServer) agentForceLeave(w http.ResponseWriter, r *http.Request, node string) error {
	if node == "" {
		return errorf(http.StatusBadRequest, "Missing node name: PUT /v1/agent/force-leave/<node>")
	}
	m := s.a.membership()
	if m == nil {
		return errorf(http.StatusInternalServerError, "agent: membership has not started")
	}
	prune := flagSet(r, "prune")
	s.a.log.Info("force leaving node", "node", node, "prune", prune)
	if err := m.ForceLeave(node, prune); err != nil {
		switch {
		case errors.Is(err, gossip.ErrNoMember):
			// Consul's words, which scripts match.
			return errorf(http.StatusInternalServerError, "agent: No node found with name '%s'", node)
		case errors.Is(err, gossip.ErrPruneAlive):
			return errorf(http.StatusBadRequest, "agent: Refusing to prune alive node '%s': it would vanish from every member list while it runs; force-leave it without prune, or stop it first", node)
		}
		s.a.log.Warn("force leave failed", "node", node, "err", err)
		return errorf(http.StatusInternalServerError, "%v", err)
	}
	return nil
}

// statusLeader answers what Consul clients use as a liveness probe. peerd
// has no leader; every agent answers with its own gossip address, so the
// answer is stable and never empty (an empty leader means "no cluster" to
// most clients).
func (s *apiServer) statusLeader(w http.ResponseWriter, r *http.Request, _ string) error {
	return writeJSON(w, s.a.SerfAddr().String())
}

// statusPeers lists this agent's own address, for the same reason.
func (s *apiServer) statusPeers(w http.ResponseWriter, r *http.Request, _ string) error {
	return writeJSON(w, []string{s.a.SerfAddr().String()})
}
