package peer

import (
	"net/http"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/gossip"
)

// apiHealthCheck is Consul's health check shape.
type apiHealthCheck struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	Definition  struct{}
	CreateIndex uint64
	ModifyIndex uint64
}

// serfHealthID is the node-level check every Consul health answer carries.
const serfHealthID = "serfHealth"

// nodeStatus is what membership says of a node by name; ok is false for a
// node membership does not know (reaped, or never met).
func (a *Agent) nodeStatus(name string) (gossip.MemberStatus, bool) {
	if a.members == nil {
		return gossip.StatusNone, false
	}
	if name == a.cfg.NodeName {
		return gossip.StatusAlive, true
	}
	for _, m := range a.members.Members() {
		if m.Name == name {
			return m.Status, true
		}
	}
	return gossip.StatusNone, false
}

// memberStatusMap returns every member's status by name, from one copy of
// the member list (nil before membership has started).
func (a *Agent) memberStatusMap() map[string]gossip.MemberStatus {
	m := a.membership()
	if m == nil {
		return nil
	}
	ms := m.Members()
	st := make(map[string]gossip.MemberStatus, len(ms))
	for _, mb := range ms {
		st[mb.Name] = mb.Status
	}
	return st
}

// serfCheck builds the serfHealth check of a node from membership.
func (a *Agent) serfCheck(node string, idx uint64) apiHealthCheck {
	c := apiHealthCheck{Node: node, CheckID: serfHealthID, Name: "Serf Health Status", Type: "",
		CreateIndex: idx, ModifyIndex: idx, ServiceTags: []string{}}
	if st, _ := a.nodeStatus(node); st == gossip.StatusAlive {
		c.Status, c.Output = crdt.StatusPassing, "Agent alive and reachable"
	} else {
		c.Status, c.Output = crdt.StatusCritical, "Agent not live or unreachable"
	}
	return c
}

func toAPICheck(node string, c crdt.Check, idx uint64) apiHealthCheck {
	tags := c.ServiceTags
	if tags == nil {
		tags = []string{}
	}
	return apiHealthCheck{Node: node, CheckID: c.ID, Name: c.Name, Status: c.Status, Notes: c.Notes,
		Output: c.Output, ServiceID: c.ServiceID, ServiceName: c.ServiceName, ServiceTags: tags,
		Type: c.Type, CreateIndex: idx, ModifyIndex: idx}
}

// originOfNode maps a node name to its origin through the replica.
func (a *Agent) originOfNode(name string) (string, bool) {
	for _, n := range a.replica.Nodes() {
		if n.Node.Name == name {
			return n.Origin, true
		}
	}
	return "", false
}

// healthNode serves /v1/health/node/<node>: serfHealth plus the node's checks.
func (s *apiServer) healthNode(w http.ResponseWriter, r *http.Request, node string) error {
	a := s.a
	// Membership counts too: serfHealth is part of the answer.
	idx, err := s.blockMembers(r, crdt.ScopeChecks)
	if err != nil {
		return err
	}
	setIndex(w, idx)
	out := []apiHealthCheck{}
	origin, known := a.originOfNode(node)
	if _, member := a.nodeStatus(node); !known && !member {
		return writeJSON(w, out)
	}
	out = append(out, a.serfCheck(node, idx))
	if known {
		for _, c := range a.replica.Checks(crdt.CheckFilter{Origin: origin}) {
			out = append(out, toAPICheck(node, c.Check, idx))
		}
	}
	return writeJSON(w, out)
}
