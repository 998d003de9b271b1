package peer

import (
	"net/http"

	"github.com/peerd/peerd/crdt"
)

// /v1/coordinate/*: serf's Vivaldi coordinates as this agent knows them
// (its own and the last heard from each member), in Consul's shape. There
// is one segment, "" (Consul's default), and no WAN pool.

type apiCoord struct {
	Vec        []float64
	Error      float64
	Adjustment float64
	Height     float64
}

type apiCoordEntry struct {
	Node    string
	Segment string
	Coord   apiCoord
}

func (a *Agent) coordinates() []apiCoordEntry {
	out := []apiCoordEntry{}
	if a.members == nil {
		return out
	}
	if c, err := a.members.Coordinate(); err == nil && c != nil {
		out = append(out, apiCoordEntry{Node: a.cfg.NodeName, Coord: apiCoord{c.Vec, c.Error, c.Adjustment, c.Height}})
	}
	for _, m := range a.members.Members() {
		if m.Name == a.cfg.NodeName || !a.nodeVisible(m.Name) {
			continue
		}
		if c, ok := a.members.CachedCoordinate(m.Name); ok && c != nil {
			out = append(out, apiCoordEntry{Node: m.Name, Coord: apiCoord{c.Vec, c.Error, c.Adjustment, c.Height}})
		}
	}
	return out
}

func (s *apiServer) coordinateNodes(w http.ResponseWriter, r *http.Request, _ string) error {
	setIndex(w, s.a.replica.ScopeIndex(crdt.ScopeNodes))
	return writeJSON(w, s.a.coordinates())
}

func (s *apiServer) coordinateNode(w http.ResponseWriter, r *http.Request, name string) error {
	setIndex(w, s.a.replica.ScopeIndex(crdt.ScopeNodes))
	for _, c := range s.a.coordinates() {
		if c.Node == name {
			return writeJSON(w, []apiCoordEntry{c})
		}
	}
	return errorf(http.StatusNotFound, "Node %q has no known coordinate", name)
}

func (s *apiServer) coordinateDatacenters(w http.ResponseWriter, r *http.Request, _ string) error {
	return writeJSON(w, []map[string]any{{"Datacenter": s.a.cfg.Datacenter, "AreaID": "wan", "Coordinates": []any{}}})
}

// aclDisabled answers /v1/acl/* as a Consul agent with ACLs disabled does.
func (s *apiServer) aclDisabled(w http.ResponseWriter, r *http.Request, _ string) error {
	return errorf(http.StatusUnauthorized, "ACL support disabled (peerd has no ACL system: rights come from node certificates; see docs/COMPATIBILITY.md)")
}
