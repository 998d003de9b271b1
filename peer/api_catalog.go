package peer

import (
	"net/http"
	"sort"
	"strings"

	"github.com/peerd/peerd/crdt"
	"github.com/peerd/peerd/gossip"
)

// Catalog and health reads. Every answer comes from the local replica;
// ?stale, ?consistent and ?cached are accepted and change nothing (there
// is no leader to ask). Nodes that left the mesh are hidden; nodes that
// failed are listed with a critical serfHealth check.

// nodeVisible reports whether a node's records are listed: not when
// membership says it left.
func (a *Agent) nodeVisible(name string) bool {
	if name == "" {
		return false // its node record has not arrived: Consul never lists a service without its node
	}
	st, ok := a.nodeStatus(name)
	return !ok || st != gossip.StatusLeft
}

// nodeMetaFilter parses ?node-meta=key:value (repeatable, ANDed).
func nodeMetaMatch(r *http.Request, meta map[string]string) bool {
	for _, kv := range r.URL.Query()["node-meta"] {
		k, v, _ := strings.Cut(kv, ":")
		if meta[k] != v {
			return false
		}
	}
	return true
}

// serviceEntries builds health entries of one service (or its Connect
// proxies), applying tags, node-meta, passing and filter.
func (s *apiServer) serviceEntries(r *http.Request, name string, connect bool, idx uint64, st map[string]gossip.MemberStatus) ([]apiServiceEntry, error) {
	a := s.a
	q := r.URL.Query()
	tags := q["tag"]
	f, err := filterParam(r)
	if err != nil {
		return nil, err
	}
	var raw []crdt.ServiceEntry
	if connect {
		for n := range a.replica.ServiceNames() {
			for _, e := range a.replica.Services(n, tags) {
				if e.Service.Kind == "connect-proxy" && e.Service.Proxy != nil && e.Service.Proxy.DestinationServiceName == name {
					raw = append(raw, e)
				}
				if e.Service.Name == name && e.Service.Connect != nil && e.Service.Connect.Native {
					raw = append(raw, e)
				}
			}
		}
	} else {
		raw = a.replica.Services(name, tags)
	}
	passing := flagTrue(r, "passing")
	out := make([]apiServiceEntry, 0, len(raw))
	for _, e := range raw {
		if !a.visibleFrom(st, e.Node.Name) || !nodeMetaMatch(r, e.Node.Meta) {
			continue
		}
		ent := apiServiceEntry{
			Node:    a.toAPINode(crdt.NodeEntry{Origin: e.Origin, Node: e.Node}, idx),
			Service: toAPIService(e.Service, "", idx),
			Checks:  make([]apiHealthCheck, 0, len(e.Checks)+1),
		}
		ent.Checks = append(ent.Checks, a.serfCheckFrom(st, e.Node.Name, idx))
		for _, c := range e.Checks {
			ent.Checks = append(ent.Checks, toAPICheck(e.Node.Name, c.Check, idx))
		}
		if passing && !allPassing(ent.Checks) {
			continue
		}
		if f != nil {
			if ok, _ := f.match(ent); !ok {
				continue
			}
		}
		out = append(out, ent)
	}
	if near := q.Get("near"); near != "" && a.members != nil {
		a.sortNear(out)
	}
	return out, nil
}

func allPassing(cs []apiHealthCheck) bool {
	for _, c := range cs {
		if c.Status != crdt.StatusPassing {
			return false
		}
	}
	return true
}

// sortNear orders entries by estimated round-trip time from this agent
// (serf network coordinates); unknown distances go last.
func (a *Agent) sortNear(out []apiServiceEntry) {
	dist := map[string]float64{}
	for _, e := range out {
		if _, ok := dist[e.Node.Node]; ok {
			continue
		}
		if e.Node.Node == a.cfg.NodeName {
			dist[e.Node.Node] = -1
			continue
		}
		if d, ok := a.members.Distance(e.Node.Node); ok {
			dist[e.Node.Node] = float64(d)
		} else {
			dist[e.Node.Node] = 1e18
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return dist[out[i].Node.Node] < dist[out[j].Node.Node] })
}

func (s *apiServer) healthService(w http.ResponseWriter, r *http.Request, name string) error {
	return s.healthServiceOrConnect(w, r, name, false)
}

func (s *apiServer) healthConnect(w http.ResponseWriter, r *http.Request, name string) error {
	return s.healthServiceOrConnect(w, r, name, true)
}

func (s *apiServer) healthServiceOrConnect(w http.ResponseWriter, r *http.Request, name string, connect bool) error {
	if name == "" {
		return errorf(http.StatusBadRequest, "Missing service name")
	}
	scope := crdt.ScopeService(name)
	if connect {
		scope = crdt.ScopeServices
	}
	idx, err := s.blockMembers(r, scope)
	if err != nil {
		return err
	}
	setIndex(w, idx)
	return s.serveCached(w, r, idx, func(st map[string]gossip.MemberStatus) (any, error) {
		return s.serviceEntries(r, name, connect, idx, st)
	})
}

// healthChecksOf serves /v1/health/checks/<service>.
func (s *apiServer) healthChecks(w http.ResponseWriter, r *http.Request, name string) error {
	a := s.a
	scope := crdt.ScopeService(name)
	idx, err := s.blockMembers(r, scope)
	if err != nil {
		return err
	}
	setIndex(w, idx)
	out := []apiHealthCheck{}
	f, err := filterParam(r)
	if err != nil {
		return err
	}
	names := a.originNames()
	for _, c := range a.replica.Checks(crdt.CheckFilter{ServiceName: name}) {
		node := names[c.Origin]
		if !a.nodeVisible(node) {
			continue
		}
		hc := toAPICheck(node, c.Check, idx)
		if f != nil {
			if ok, _ := f.match(hc); !ok {
				continue
			}
		}
		out = append(out, hc)
	}
	return writeJSON(w, out)
}

// originNames maps origins to node names.
func (a *Agent) originNames() map[string]string {
	m := map[string]string{}
	for _, n := range a.replica.Nodes() {
		m[n.Origin] = n.Node.Name
	}
	return m
}

// healthState serves /v1/health/state/<state>: every check in that state
// ("any" for all), serfHealth included.
func (s *apiServer) healthState(w http.ResponseWriter, r *http.Request, state string) error {
	switch state {
	case "any", crdt.StatusPassing, crdt.StatusWarning, crdt.StatusCritical:
	default:
		return errorf(http.StatusBadRequest, "Invalid state %q (want any, passing, warning or critical)", state)
	}
	a := s.a
	idx, err := s.blockMembers(r, crdt.ScopeChecks)
	if err != nil {
		return err
	}
	setIndex(w, idx)
	f, err := filterParam(r)
	if err != nil {
		return err
	}
	out := []apiHealthCheck{}
	add := func(hc apiHealthCheck) {
		if state != "any" && hc.Status != state {
			return
		}
		if f != nil {
			if ok, _ := f.match(hc); !ok {
				return
			}
		}
		out = append(out, hc)
	}
	names := a.originNames()
	for _, n := range a.replica.Nodes() {
		if a.nodeVisible(n.Node.Name) && nodeMetaMatch(r, n.Node.Meta) {
			add(a.serfCheck(n.Node.Name, idx))
		}
	}
	for _, c := range a.replica.Checks(crdt.CheckFilter{}) {
		node := names[c.Origin]
		if !a.nodeVisible(node) {
			continue
		}
		add(toAPICheck(node, c.Check, idx))
	}
	return writeJSON(w, out)
}

// catalogServices serves /v1/catalog/services: name → tags.
func (s *apiServer) catalogServices(w http.ResponseWriter, r *http.Request, _ string) error {
	a := s.a
	idx, err := s.blockMembers(r, crdt.ScopeServices)
	if err != nil {
		return err
	}
	setIndex(w, idx)
	out := map[string][]string{}
	hasMeta := len(r.URL.Query()["node-meta"]) > 0
	for name, tags := range a.replica.ServiceNames() {
		visible := false
		for _, e := range a.replica.Services(name, nil) {
			if a.nodeVisible(e.Node.Name) && (!hasMeta || nodeMetaMatch(r, e.Node.Meta)) {
				visible = true
				break
			}
		}
		if visible {
			out[name] = strs(tags)
		}
	}
	return writeJSON(w, out)
}

func (a *Agent) toCatalogService(e crdt.ServiceEntry, idx uint64) apiCatalogService {
	sv := e.Service
	w := Weights{Passing: sv.Weights.Passing, Warning: sv.Weights.Warning}
	if w.Passing == 0 && w.Warning == 0 {
		w = Weights{Passing: 1, Warning: 1}
	}
	return apiCatalogService{
		ID: e.Origin, Node: e.Node.Name, Address: e.Node.Address, Datacenter: a.cfg.Datacenter,
		TaggedAddresses: nodeTaggedAddresses(e.Node.Address), NodeMeta: strMap(e.Node.Meta),
		ServiceKind: sv.Kind, ServiceID: sv.ID, ServiceName: sv.Name, ServiceAddress: sv.Address,
		ServiceTaggedAddresses: serviceTaggedAddresses(sv.Address, sv.Port), ServiceTags: strs(sv.Tags),
		ServiceMeta: strMap(sv.Meta), ServicePort: sv.Port, ServiceWeights: w,
		ServiceEnableTagOverride: sv.EnableTagOverride, ServiceProxy: toAPIProxy(sv.Proxy),
		CreateIndex: idx, ModifyIndex: idx,
	}
}

// catalogService serves /v1/catalog/service/<name> (and connect/<name>).
func (s *apiServer) catalogService(w http.ResponseWriter, r *http.Request, name string) error {
	return s.catalogServiceOrConnect(w, r, name, false)
}

func (s *apiServer) catalogConnect(w http.ResponseWriter, r *http.Request, name string) error {
	return s.catalogServiceOrConnect(w, r, name, true)
}

func (s *apiServer) catalogServiceOrConnect(w http.ResponseWriter, r *http.Request, name string, connect bool) error {
	if name == "" {
		return errorf(http.StatusBadRequest, "Missing service name")
	}
	scope := crdt.ScopeService(name)
	if connect {
		scope = crdt.ScopeServices
	}
	idx, err := s.blockMembers(r, scope)
	if err != nil {
		return err
	}
	setIndex(w, idx)
	f, err := filterParam(r)
	if err != nil {
		return err
	}
	return s.serveCached(w, r, idx, func(st map[string]gossip.MemberStatus) (any, error) {
		return s.catalogEntries(r, name, connect, idx, st, f)
	})
}

func (s *apiServer) catalogEntries(r *http.Request, name string, connect bool, idx uint64, st map[string]gossip.MemberStatus, f *filterExpr) ([]apiCatalogService, error) {
	a := s.a
	entries, err := s.serviceEntries(stripFilter(r), name, connect, idx, st)
	if err != nil {
		return nil, err
	}
	out := make([]apiCatalogService, 0, len(entries))
	for _, e := range entries {
		origin := e.Node.ID
		node, _ := a.replica.Node(origin)
		svc := findService(a.replica.NodeServices(origin), e.Service.ID)
		cs := a.toCatalogService(crdt.ServiceEntry{Origin: origin, Node: node, Service: svc}, idx)
		if f != nil {
			if ok, _ := f.match(cs); !ok {
				continue
			}
		}
		out = append(out, cs)
	}
	return out, nil
}

func findService(es []crdt.ServiceEntry, id string) crdt.Service {
	for _, e := range es {
		if e.Service.ID == id {
			return e.Service
		}
	}
	return crdt.Service{}
}

// stripFilter returns r without ?filter= and ?passing (catalog reads
// apply filter to their own shape and never filter on health).
func stripFilter(r *http.Request) *http.Request {
	q := r.URL.Query()
	if !q.Has("filter") && !q.Has("passing") {
		return r
	}
	q.Del("filter")
	q.Del("passing")
	r2 := r.Clone(r.Context())
	r2.URL.RawQuery = q.Encode()
	return r2
}

// catalogNodes serves /v1/catalog/nodes.
func (s *apiServer) catalogNodes(w http.ResponseWriter, r *http.Request, _ string) error {
	a := s.a
	idx, err := s.blockMembers(r, crdt.ScopeNodes)
	if err != nil {
		return err
	}
	setIndex(w, idx)
	f, err := filterParam(r)
	if err != nil {
		return err
	}
	out := []apiNode{}
	for _, n := range a.replica.Nodes() {
		if !a.nodeVisible(n.Node.Name) || !nodeMetaMatch(r, n.Node.Meta) {
			continue
		}
		an := a.toAPINode(n, idx)
		if f != nil {
			if ok, _ := f.match(an); !ok {
				continue
			}
		}
		out = append(out, an)
	}
	if r.URL.Query().Get("near") != "" && a.members != nil {
		ents := make([]apiServiceEntry, len(out))
		for i := range out {
			ents[i].Node = out[i]
		}
		a.sortNear(ents)
		for i := range ents {
			out[i] = ents[i].Node
		}
	}
	return writeJSON(w, out)
}

// catalogNode serves /v1/catalog/node/<name>: {Node, Services by ID}.
func (s *apiServer) catalogNode(w http.ResponseWriter, r *http.Request, name string) error {
	return s.catalogNodeShape(w, r, name, false)
}

// catalogNodeServices serves /v1/catalog/node-services/<name>.
func (s *apiServer) catalogNodeServices(w http.ResponseWriter, r *http.Request, name string) error {
	return s.catalogNodeShape(w, r, name, true)
}

func (s *apiServer) catalogNodeShape(w http.ResponseWriter, r *http.Request, name string, list bool) error {
	a := s.a
	origin, known := a.originOfNode(name)
	scope := crdt.ScopeNodes
	if known {
		scope = crdt.ScopeNode(origin)
	}
	idx, err := s.blockMembers(r, scope)
	if err != nil {
		return err
	}
	setIndex(w, idx)
	n, ok := a.replica.Node(origin)
	if !known || !ok || !a.nodeVisible(name) {
		if list {
			return errorf(http.StatusNotFound, "Node not found")
		}
		return writeJSON(w, nil)
	}
	node := a.toAPINode(crdt.NodeEntry{Origin: origin, Node: n}, idx)
	var svcs []apiAgentService
	for _, e := range a.replica.NodeServices(origin) {
		svcs = append(svcs, toAPIService(e.Service, a.cfg.Datacenter, idx))
	}
	if list {
		if svcs == nil {
			svcs = []apiAgentService{}
		}
		return writeJSON(w, map[string]any{"Node": node, "Services": svcs})
	}
	m := map[string]apiAgentService{}
	for _, sv := range svcs {
		m[sv.ID] = sv
	}
	return writeJSON(w, map[string]any{"Node": node, "Services": m})
}

func (s *apiServer) catalogDatacenters(w http.ResponseWriter, r *http.Request, _ string) error {
	return writeJSON(w, []string{s.a.cfg.Datacenter})
}

// errNoCatalogWrites answers /v1/catalog/register and deregister.
func (s *apiServer) catalogWrite(w http.ResponseWriter, r *http.Request, _ string) error {
	return errorf(http.StatusBadRequest,
		"use the agent endpoints (/v1/agent/service/register, /v1/agent/check/register): peerd has no catalog servers; every node publishes only its own services")
}
