package peer

import (
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/peerd/peerd/crdt"
)

// Agent endpoints over the local registry: /v1/agent/services, checks,
// service and check (de)registration, TTL updates and maintenance.

// maxBodyBytes bounds request bodies other than KV values.
const maxBodyBytes = 1 << 20

// readBody reads a request body up to maxBodyBytes.
func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "reading body: %v", err)
	}
	if len(b) > maxBodyBytes {
		return nil, errorf(http.StatusRequestEntityTooLarge, "Request body exceeds %d bytes", maxBodyBytes)
	}
	return b, nil
}

// decodeBody decodes a JSON body leniently into v, with a 400 on error.
func decodeBody(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if err := decodeLooseJSON(b, v); err != nil {
		return errorf(http.StatusBadRequest, "Request decode failed: %v", err)
	}
	return nil
}

// localServices returns this node's services as api.AgentService, by ID.
func (a *Agent) localServices() map[string]apiAgentService {
	out := map[string]apiAgentService{}
	for _, e := range a.replica.NodeServices(a.id) {
		s := toAPIService(e.Service, a.cfg.Datacenter, 0)
		s.ContentHash = contentHash(s)
		out[s.ID] = s
	}
	return out
}

func (s *apiServer) agentServices(w http.ResponseWriter, r *http.Request, _ string) error {
	a := s.a
	scope := crdt.ScopeNode(a.id)
	if err := s.block(r, scope); err != nil {
		return err
	}
	setIndex(w, a.replica.ScopeIndex(scope))
	svcs := a.localServices()
	f, err := filterParam(r)
	if err != nil {
		return err
	}
	if f != nil {
		for id, sv := range svcs {
			if ok, _ := f.match(sv); !ok {
				delete(svcs, id)
			}
		}
	}
	return writeJSON(w, svcs)
}

func (s *apiServer) agentService(w http.ResponseWriter, r *http.Request, id string) error {
	a := s.a
	scope := crdt.ScopeNode(a.id)
	// Consul blocks this endpoint on ?hash=; peerd blocks on ?index= too.
	q := r.URL.Query()
	if h := q.Get("hash"); h != "" {
		_, wait, err := blockingParams(r)
		if err != nil {
			return err
		}
		deadline := time.NewTimer(wait)
		defer deadline.Stop()
		for {
			_, ch := a.replica.WatchIndex(scope)
			sv, ok := a.localServices()[id]
			if !ok || sv.ContentHash != h {
				break
			}
			select {
			case <-ch:
				continue
			case <-deadline.C:
			case <-r.Context().Done():
			}
			break
		}
	} else if err := s.block(r, scope); err != nil {
		return err
	}
	setIndex(w, a.replica.ScopeIndex(scope))
	sv, ok := a.localServices()[id]
	if !ok {
		return errorf(http.StatusNotFound, "unknown service ID: %s", id)
	}
	w.Header().Set("X-Consul-ContentHash", sv.ContentHash)
	return writeJSON(w, sv)
}

// localChecks returns the agent's checks with their latest local status
// and output (the replica may lag behind by the output rate limit).
func (a *Agent) localChecks() map[string]apiAgentCheck {
	l := &a.local
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]apiAgentCheck{}
	for id, c := range l.checks {
		d := c.Def
		ac := apiAgentCheck{Node: a.cfg.NodeName, CheckID: id, Name: d.Name, Status: c.status, Notes: d.Notes,
			Output: c.output, ServiceID: d.ServiceID, ServiceName: c.serviceName, ServiceTags: strs(c.serviceTags),
			Type: c.checkType(),
			Definition: apiCheckDefinition{HTTP: d.HTTP, Header: d.Header, Method: d.Method, Body: d.Body,
				TLSServerName: d.TLSServerName, TLSSkipVerify: d.TLSSkipVerify, TCP: d.TCP,
				Interval: durString(d.Interval), Timeout: durString(d.Timeout),
				DeregisterCriticalServiceAfter: durString(d.DeregisterCriticalServiceAfter)}}
		out[id] = ac
	}
	return out
}

func durString(d Duration) string {
	if d == 0 {
		return ""
	}
	return time.Duration(d).String()
}

func (s *apiServer) agentChecks(w http.ResponseWriter, r *http.Request, _ string) error {
	a := s.a
	scope := crdt.ScopeNode(a.id)
	if err := s.block(r, scope); err != nil {
		return err
	}
	setIndex(w, a.replica.ScopeIndex(scope))
	checks := a.localChecks()
	f, err := filterParam(r)
	if err != nil {
		return err
	}
	if f != nil {
		for id, c := range checks {
			if ok, _ := f.match(c); !ok {
				delete(checks, id)
			}
		}
	}
	return writeJSON(w, checks)
}

func (s *apiServer) agentServiceRegister(w http.ResponseWriter, r *http.Request, _ string) error {
	var def ServiceDefinition
	if err := decodeBody(r, &def); err != nil {
		return err
	}
	return s.a.RegisterService(r.Context(), def, flagTrue(r, "replace-existing-checks"))
}

// flagTrue is a boolean parameter that counts when present and not "false".
func flagTrue(r *http.Request, name string) bool {
	v, ok := r.URL.Query()[name]
	return ok && (len(v) == 0 || v[0] != "false")
}

func (s *apiServer) agentServiceDeregister(w http.ResponseWriter, r *http.Request, id string) error {
	if id == "" {
		return errorf(http.StatusBadRequest, "Missing service ID")
	}
	return s.a.DeregisterService(r.Context(), id)
}

func (s *apiServer) agentCheckRegister(w http.ResponseWriter, r *http.Request, _ string) error {
	var def CheckDefinition
	if err := decodeBody(r, &def); err != nil {
		return err
	}
	return s.a.RegisterCheck(r.Context(), def)
}

func (s *apiServer) agentCheckDeregister(w http.ResponseWriter, r *http.Request, id string) error {
	if id == "" {
		return errorf(http.StatusBadRequest, "Missing check ID")
	}
	return s.a.DeregisterCheck(r.Context(), id)
}

// agentCheckTTL serves /v1/agent/check/{pass,warn,fail}/<id>?note=.
func (s *apiServer) agentCheckTTL(status string) func(http.ResponseWriter, *http.Request, string) error {
	return func(w http.ResponseWriter, r *http.Request, id string) error {
		return s.a.UpdateTTLCheck(r.Context(), id, status, r.URL.Query().Get("note"))
	}
}

// agentCheckUpdate serves PUT /v1/agent/check/update/<id> {Status, Output}.
func (s *apiServer) agentCheckUpdate(w http.ResponseWriter, r *http.Request, id string) error {
	var body struct {
		Status string
		Output string
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	return s.a.UpdateTTLCheck(r.Context(), id, body.Status, body.Output)
}

// maintParams reads ?enable=true|false&reason=.
func maintParams(r *http.Request) (bool, string, error) {
	q := r.URL.Query()
	switch strings.ToLower(q.Get("enable")) {
	case "true":
		return true, q.Get("reason"), nil
	case "false":
		return false, "", nil
	}
	return false, "", errorf(http.StatusBadRequest, "Missing or invalid value for 'enable' (want true or false)")
}

func (s *apiServer) agentMaintenance(w http.ResponseWriter, r *http.Request, _ string) error {
	enable, reason, err := maintParams(r)
	if err != nil {
		return err
	}
	return s.a.SetNodeMaintenance(r.Context(), enable, reason)
}

func (s *apiServer) agentServiceMaintenance(w http.ResponseWriter, r *http.Request, id string) error {
	enable, reason, err := maintParams(r)
	if err != nil {
		return err
	}
	return s.a.SetServiceMaintenance(r.Context(), id, enable, reason)
}

// agentHealthService serves /v1/agent/health/service/{name,id}/<x>: the
// aggregated local status of services, as Consul does (200 passing,
// 429 warning, 503 critical, 404 unknown).
func (s *apiServer) agentHealthServiceByID(w http.ResponseWriter, r *http.Request, id string) error {
	return s.agentHealth(w, r, func(sv apiAgentService) bool { return sv.ID == id }, true)
}

func (s *apiServer) agentHealthServiceByName(w http.ResponseWriter, r *http.Request, name string) error {
	return s.agentHealth(w, r, func(sv apiAgentService) bool { return sv.Service == name }, false)
}

func (s *apiServer) agentHealth(w http.ResponseWriter, r *http.Request, pick func(apiAgentService) bool, single bool) error {
	a := s.a
	checks := a.localChecks()
	type info struct {
		AggregatedStatus string
		Service          apiAgentService
		Checks           []apiAgentCheck
	}
	var out []info
	worst := ""
	for _, sv := range a.localServices() {
		if !pick(sv) {
			continue
		}
		in := info{Service: sv, Checks: []apiAgentCheck{}}
		for _, c := range checks {
			if c.ServiceID == sv.ID || c.ServiceID == "" {
				in.Checks = append(in.Checks, c)
			}
		}
		sort.Slice(in.Checks, func(i, j int) bool { return in.Checks[i].CheckID < in.Checks[j].CheckID })
		in.AggregatedStatus = crdt.StatusPassing
		for _, c := range in.Checks {
			in.AggregatedStatus = worse(in.AggregatedStatus, c.Status)
		}
		worst = worse(worst, in.AggregatedStatus)
		out = append(out, in)
	}
	code := http.StatusOK
	switch worst {
	case "":
		if single {
			return errorf(http.StatusNotFound, "ServiceId not found")
		}
		return errorf(http.StatusNotFound, "ServiceName not found")
	case crdt.StatusWarning:
		code = http.StatusTooManyRequests
	case crdt.StatusCritical:
		code = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if single {
		return writeJSON(w, out[0])
	}
	return writeJSON(w, out)
}

// worse returns the worse of two statuses ("" is better than all).
func worse(x, y string) string {
	rank := map[string]int{"": 0, crdt.StatusPassing: 1, crdt.StatusWarning: 2, crdt.StatusCritical: 3}
	if rank[y] > rank[x] {
		return y
	}
	return x
}

// block runs a blocking query on one scope with the request's parameters.
func (s *apiServer) block(r *http.Request, scope string) error {
	minIndex, wait, err := blockingParams(r)
	if err != nil {
		return err
	}
	rep := s.a.replica
	waitFor(r.Context(), minIndex, wait, func() (uint64, <-chan struct{}) { return rep.WatchIndex(scope) })
	return nil
}
