package peer

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/peerd/peerd/gossip"
)

// keyringResponse is one pool's answer, as Consul's structs.KeyringResponse
// (peerd has one pool: the LAN of its datacenter).
type keyringResponse struct {
	WAN         bool
	Datacenter  string
	Segment     string
	Messages    map[string]string `json:",omitempty"`
	Keys        map[string]int
	PrimaryKeys map[string]int
	NumNodes    int
}

// operatorKeyring serves /v1/operator/keyring as Consul: GET lists the keys
// of every member, POST installs {"Key": "…"}, PUT makes it primary, DELETE
// removes it; ?relay-factor=0..5 as serf's. A write answers 200 with no
// body. When a member reports an error, or does not answer, the answer is
// a 500 with Consul's multi-error text ("dc1 (LAN) error: 1/3 nodes
// reported failure" and one line per member's message), also for GET.
func (s *apiServer) operatorKeyring(w http.ResponseWriter, r *http.Request, _ string) error {
	var args struct{ Key string }
	if r.Method != http.MethodGet {
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&args); err != nil {
			return errorf(http.StatusBadRequest, "Request decode failed: %v", err)
		}
	}
	q := r.URL.Query()
	var relay uint8
	if v := q.Get("relay-factor"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return errorf(http.StatusBadRequest, "Error parsing relay factor: %v", err)
		}
		if n < 0 || n > 5 {
			return errorf(http.StatusBadRequest, "Invalid relay-factor: Relay factor must be in range: [0, 5]")
		}
		relay = uint8(n)
	}
	if v := q.Get("local-only"); v != "" {
		// One pool, no WAN: local-only changes nothing, but is checked
		// as Consul does.
		local, err := strconv.ParseBool(v)
		if err != nil {
			return errorf(http.StatusBadRequest, "Error parsing local-only: %v", err)
		}
		if local && r.Method != http.MethodGet {
			return errorf(http.StatusBadRequest, "Invalid use of local-only: local-only can only be set for list requests")
		}
	}
	select {
	case <-s.a.membersReady:
	default:
		return errorf(http.StatusServiceUnavailable, "gossip is not running yet")
	}
	m := s.a.members
	var res gossip.KeyringResult
	switch r.Method {
	case http.MethodGet:
		res, _ = m.ListKeys(relay)
	case http.MethodPost:
		res, _ = m.InstallKey(args.Key, relay)
	case http.MethodPut:
		res, _ = m.UseKey(args.Key, relay)
	case http.MethodDelete:
		res, _ = m.RemoveKey(args.Key, relay)
	}
	if res.Error != "" {
		s.a.log.Warn("keyring operation failed", "method", r.Method, "err", res.Error)
		return errorf(http.StatusInternalServerError, "%s", keyringErrorText(s.a.cfg.Datacenter, res))
	}
	if r.Method != http.MethodGet {
		return nil
	}
	return writeJSON(w, []keyringResponse{{
		Datacenter:  s.a.cfg.Datacenter,
		Messages:    res.Messages,
		Keys:        nonNil(res.Keys),
		PrimaryKeys: nonNil(res.PrimaryKeys),
		NumNodes:    res.NumNodes,
	}})
}

func nonNil(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return m
}

// keyringErrorText formats a failed operation as Consul's multierror does:
// the pool's error, then each member's message (sorted by node here).
func keyringErrorText(dc string, res gossip.KeyringResult) string {
	lines := []string{fmt.Sprintf("%s (LAN) error: %s", dc, res.Error)}
	nodes := make([]string, 0, len(res.Messages))
	for n := range res.Messages {
		nodes = append(nodes, n)
	}
	sort.Strings(nodes)
	for _, n := range nodes {
		lines = append(lines, fmt.Sprintf("%s: %s", n, res.Messages[n]))
	}
	head := "1 error occurred:"
	if len(lines) > 1 {
		head = fmt.Sprintf("%d errors occurred:", len(lines))
	}
	return head + "\n\t* " + strings.Join(lines, "\n\t* ") + "\n"
}
