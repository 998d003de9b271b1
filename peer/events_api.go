package peer

import (
	"io"
	"net/http"
	"strings"
)

// eventFire serves PUT /v1/event/fire/:name?node=&service=&tag= with the
// raw body as payload, as Consul: 200 and the event (its new ID, Version
// 1, LTime 0). Unlike Consul, which answers 500 for both, an invalid
// filter is a 400 and an event above MaxEventSize a 413.
func (s *apiServer) eventFire(w http.ResponseWriter, r *http.Request, name string) error {
	if name == "" {
		return errorf(http.StatusBadRequest, "Missing name")
	}
	if strings.HasPrefix(name, "_") {
		return errorf(http.StatusBadRequest, "Event names starting with '_' are reserved")
	}
	q := r.URL.Query()
	ev := UserEvent{Name: name, NodeFilter: q.Get("node"), ServiceFilter: q.Get("service"), TagFilter: q.Get("tag")}
	if _, _, _, err := compileEventFilters(ev.NodeFilter, ev.ServiceFilter, ev.TagFilter); err != nil {
		return errorf(http.StatusBadRequest, "%v", err)
	}
	room := MaxEventSize - eventSize(name, nil, ev.NodeFilter, ev.ServiceFilter, ev.TagFilter)
	payload, err := io.ReadAll(io.LimitReader(r.Body, int64(max(room, 0))+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "Failed to read the payload: %v", err)
	}
	if len(payload) > room {
		return errorf(http.StatusRequestEntityTooLarge,
			"User event too large: name, payload and filters may have at most %d bytes together", MaxEventSize)
	}
	ev.Payload = payload
	out, err := s.a.FireEvent(ev)
	if err != nil {
		return err
	}
	return writeJSON(w, out)
}

// eventList serves GET /v1/event/list?name=, a blocking query as Consul's:
// the index is eventIndex of the answer, and ?index= waits until it
// differs. node, service and tag (a peerd extension; Consul ignores them)
// keep the events fired with exactly that filter.
func (s *apiServer) eventList(w http.ResponseWriter, r *http.Request, _ string) error {
	minIndex, wait, err := blockingParams(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	name, node, service, tag := q.Get("name"), q.Get("node"), q.Get("service"), q.Get("tag")
	current := func() ([]UserEvent, uint64, <-chan struct{}) {
		evs, ch := s.a.events.list()
		evs = filterEvents(evs, name, node, service, tag)
		return evs, eventIndex(evs), ch
	}
	waitFor(r.Context(), minIndex, wait, func() (uint64, <-chan struct{}) {
		_, idx, ch := current()
		return idx, ch
	})
	evs, idx, _ := current()
	setIndex(w, idx)
	return writeJSON(w, evs)
}
