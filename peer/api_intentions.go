package peer

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/peerd/peerd/crdt"
)

// Intentions over HTTP. Reads are Consul's. Writes must carry a signed
// intention document (an identity envelope made by peer.SignIntention with
// a key whose certificate allows signing intentions), either as the body
// {"Signed": "<base64 envelope>"} or in the header
// X-Peerd-Signed-Intention: <base64 envelope>. A -dev agent signs unsigned
// writes itself with its dev root. A deletion is a signed document with
// Deleted set and a higher Version.

// signedIntentionHeader carries a pre-signed envelope.
const signedIntentionHeader = "X-Peerd-Signed-Intention"

// apiIntention is api.Intention.
type apiIntention struct {
	ID                   string
	Description          string
	SourceNS             string
	SourceName           string
	DestinationNS        string
	DestinationName      string
	SourcePartition      string `json:",omitempty"`
	DestinationPartition string `json:",omitempty"`
	SourceType           string
	Action               string                     `json:",omitempty"`
	Permissions          []crdt.IntentionPermission `json:",omitempty"`
	Meta                 map[string]string
	Precedence           int
	CreatedAt            time.Time
	UpdatedAt            time.Time
	Hash                 []byte `json:",omitempty"`
	CreateIndex          uint64
	ModifyIndex          uint64
}

func toAPIIntention(in crdt.Intention, idx uint64) apiIntention {
	var t time.Time
	if in.Version > 1e15 { // versions peerd makes are Unix nanoseconds
		t = time.Unix(0, int64(in.Version)).UTC()
	}
	return apiIntention{ID: in.ID, Description: in.Description, SourceNS: "default", SourceName: in.SourceName,
		DestinationNS: "default", DestinationName: in.DestinationName, SourceType: "consul", Action: in.Action,
		Permissions: in.Permissions, Meta: strMap(in.Meta), Precedence: in.Precedence(),
		CreatedAt: t, UpdatedAt: t, CreateIndex: idx, ModifyIndex: idx}
}

// intentionBody is what a write may send: a signed envelope, or the
// fields of an intention (then the agent must be able to sign it).
type intentionBody struct {
	Signed          string
	SourceName      string
	DestinationName string
	Action          string
	Description     string
	Meta            map[string]string
	Permissions     []crdt.IntentionPermission
}

func (s *apiServer) intentionsList(w http.ResponseWriter, r *http.Request, _ string) error {
	a := s.a
	if r.Method == http.MethodPost {
		return s.intentionCreateLegacy(w, r)
	}
	if err := s.block(r, crdt.ScopeIntentions); err != nil {
		return err
	}
	idx := a.replica.ScopeIndex(crdt.ScopeIntentions)
	setIndex(w, idx)
	f, err := filterParam(r)
	if err != nil {
		return err
	}
	out := []apiIntention{}
	for _, in := range a.replica.Intentions() {
		ai := toAPIIntention(in, idx)
		if f != nil {
			if ok, _ := f.match(ai); !ok {
				continue
			}
		}
		out = append(out, ai)
	}
	return writeJSON(w, out)
}

// intentionExact serves /v1/connect/intentions/exact?source=&destination=.
func (s *apiServer) intentionExact(w http.ResponseWriter, r *http.Request, _ string) error {
	a := s.a
	q := r.URL.Query()
	src, dst := q.Get("source"), q.Get("destination")
	if src == "" || dst == "" {
		return errorf(http.StatusBadRequest, "required query parameters 'source' and 'destination' are missing")
	}
	switch r.Method {
	case http.MethodGet:
		if err := s.block(r, crdt.ScopeIntentions); err != nil {
			return err
		}
		idx := a.replica.ScopeIndex(crdt.ScopeIntentions)
		setIndex(w, idx)
		in, ok := a.replica.IntentionFor(src, dst)
		if !ok || in.Deleted {
			return errorf(http.StatusNotFound, "Intention not found")
		}
		return writeJSON(w, toAPIIntention(in, idx))
	case http.MethodPut:
		var body intentionBody
		if err := decodeOptionalBody(r, &body); err != nil {
			return err
		}
		body.SourceName, body.DestinationName = src, dst
		if _, err := a.writeIntention(r, body, false); err != nil {
			return err
		}
		return writeJSON(w, true)
	default: // DELETE
		var body intentionBody
		if err := decodeOptionalBody(r, &body); err != nil {
			return err
		}
		body.SourceName, body.DestinationName = src, dst
		if _, err := a.writeIntention(r, body, true); err != nil {
			return err
		}
		return writeJSON(w, true)
	}
}

// intentionCreateLegacy serves POST /v1/connect/intentions: {"ID": ...}.
func (s *apiServer) intentionCreateLegacy(w http.ResponseWriter, r *http.Request) error {
	var body intentionBody
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.Signed == "" && r.Header.Get(signedIntentionHeader) == "" {
		if _, ok := s.a.replica.IntentionFor(body.SourceName, body.DestinationName); ok {
			if in, _ := s.a.replica.IntentionFor(body.SourceName, body.DestinationName); !in.Deleted {
				return errorf(http.StatusConflict, "duplicate intention found: %s => %s", body.SourceName, body.DestinationName)
			}
		}
	}
	in, err := s.a.writeIntention(r, body, false)
	if err != nil {
		return err
	}
	return writeJSON(w, map[string]string{"ID": in.ID})
}

// intentionByID serves the legacy /v1/connect/intentions/<id> routes.
func (s *apiServer) intentionByID(w http.ResponseWriter, r *http.Request, id string) error {
	a := s.a
	if id == "" {
		return errorf(http.StatusBadRequest, "Missing intention ID")
	}
	var found *crdt.Intention
	for _, in := range a.replica.Intentions() {
		if in.ID == id {
			in := in
			found = &in
			break
		}
	}
	switch r.Method {
	case http.MethodGet:
		if err := s.block(r, crdt.ScopeIntentions); err != nil {
			return err
		}
		idx := a.replica.ScopeIndex(crdt.ScopeIntentions)
		setIndex(w, idx)
		if found == nil {
			return errorf(http.StatusNotFound, "Intention not found")
		}
		return writeJSON(w, toAPIIntention(*found, idx))
	case http.MethodPut:
		if found == nil {
			return errorf(http.StatusNotFound, "Intention not found")
		}
		var body intentionBody
		if err := decodeBody(r, &body); err != nil {
			return err
		}
		if body.SourceName == "" {
			body.SourceName = found.SourceName
		}
		if body.DestinationName == "" {
			body.DestinationName = found.DestinationName
		}
		if body.SourceName != found.SourceName || body.DestinationName != found.DestinationName {
			return errorf(http.StatusBadRequest, "peerd keys intentions by source and destination; delete and create to rename")
		}
		_, err := a.writeIntention(r, body, false)
		return err
	default:
		if found == nil {
			return errorf(http.StatusNotFound, "Intention not found")
		}
		var body intentionBody
		if err := decodeOptionalBody(r, &body); err != nil {
			return err
		}
		body.SourceName, body.DestinationName = found.SourceName, found.DestinationName
		_, err := a.writeIntention(r, body, true)
		return err
	}
}

// decodeOptionalBody decodes a body if there is one.
func decodeOptionalBody(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if strings.TrimSpace(string(b)) == "" {
		return nil
	}
	if err := decodeLooseJSON(b, v); err != nil {
		return errorf(http.StatusBadRequest, "Request decode failed: %v", err)
	}
	return nil
}

// errUnsignedIntention explains how to sign an intention write.
func errUnsignedIntention() error {
	return errorf(http.StatusForbidden,
		"intention writes must be signed by a key allowed to sign intentions (a root, or a certificate issued with -sign-intentions): "+
			"use `peerd intention create -allow|-deny -from SRC -to DST -sign-key KEY [-sign-cert CHAIN]`, "+
			"or send the body {\"Signed\": \"<base64 envelope made by peer.SignIntention>\"} "+
			"(or the header %s); only a -dev agent signs unsigned writes itself", signedIntentionHeader)
}

// writeIntention stores a signed intention, or signs it with the dev root.
func (a *Agent) writeIntention(r *http.Request, body intentionBody, del bool) (crdt.Intention, error) {
	signedB64 := body.Signed
	if signedB64 == "" {
		signedB64 = r.Header.Get(signedIntentionHeader)
	}
	var signed []byte
	var in crdt.Intention
	if signedB64 != "" {
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(signedB64))
		if err != nil {
			return in, errorf(http.StatusBadRequest, "Signed: not base64: %v", err)
		}
		in, err = a.trust.VerifyIntention(b)
		if err != nil {
			return in, errorf(http.StatusForbidden, "signed intention refused: %v", err)
		}
		if body.SourceName != "" && (in.SourceName != body.SourceName || in.DestinationName != body.DestinationName) {
			return in, errorf(http.StatusBadRequest, "signed intention is %s -> %s, not %s -> %s",
				in.SourceName, in.DestinationName, body.SourceName, body.DestinationName)
		}
		if del && !in.Deleted {
			return in, errorf(http.StatusBadRequest, "a deletion must be a signed document with Deleted set")
		}
		signed = b
	} else {
		if a.cfg.DevRootKey == nil {
			return in, errUnsignedIntention()
		}
		held, ok := a.replica.IntentionFor(body.SourceName, body.DestinationName)
		if del && (!ok || held.Deleted) {
			return in, errorf(http.StatusNotFound, "Intention not found")
		}
		in = crdt.Intention{SourceName: body.SourceName, DestinationName: body.DestinationName,
			Action: strings.ToLower(body.Action), Description: body.Description, Meta: body.Meta,
			Permissions: body.Permissions, Deleted: del}
		if del {
			in.Action, in.Permissions = "", nil
		}
		in.ID = held.ID
		if in.ID == "" {
			in.ID = NewIntentionID()
		}
		in.Version = uint64(time.Now().UnixNano())
		if ok && held.Version >= in.Version {
			in.Version = held.Version + 1
		}
		if err := in.Validate(); err != nil {
			return in, errorf(http.StatusBadRequest, "Invalid intention: %v", err)
		}
		b, err := SignIntention(in, a.cfg.DevRootKey, nil)
		if err != nil {
			return in, errorf(http.StatusBadRequest, "Invalid intention: %v", err)
		}
		signed = b
	}
	err := a.commit(r.Context(), func(now time.Time) (*crdt.Delta, error) {
		return a.replica.PutIntention(signed, a.trust, now)
	})
	switch {
	case err == nil:
		return in, nil
	case errors.Is(err, crdt.ErrRollback):
		return in, errorf(http.StatusConflict, "%v (sign a newer Version)", err)
	case errors.Is(err, crdt.ErrUnauthorized):
		return in, errorf(http.StatusForbidden, "%v", err)
	case errors.Is(err, crdt.ErrInvalid):
		return in, errorf(http.StatusBadRequest, "%v", err)
	}
	return in, err
}

// NewIntentionID returns a random UUID-shaped ID, as Consul's.
func NewIntentionID() string {
	var b [16]byte
	rand.Read(b[:])
	return formatUUID(b)
}

// pairIntentionID is the ID given to a signed intention that carries none
// (the agent cannot add one to a signed document): derived from its
// source and destination, so every agent shows the same ID and it stays
// with the pair across updates, as a Consul intention's ID does.
func pairIntentionID(src, dst string) string {
	sum := sha256.Sum256([]byte("peerd-intention-id\x00" + src + "\x00" + dst))
	var b [16]byte
	copy(b[:], sum[:16])
	b[6] = b[6]&0x0f | 0x50 // name-based (version 5 layout)
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return formatUUID(b)
}

func formatUUID(b [16]byte) string {
	h := hex.EncodeToString(b[:])
	return fmt.Sprintf("%s-%s-%s-%s-%s", h[:8], h[8:12], h[12:16], h[16:20], h[20:])
}

// intentionMatch serves /v1/connect/intentions/match?by=&name=.
func (s *apiServer) intentionMatch(w http.ResponseWriter, r *http.Request, _ string) error {
	a := s.a
	q := r.URL.Query()
	by := q.Get("by")
	if by != "source" && by != "destination" {
		return errorf(http.StatusBadRequest, "required query parameter 'by' must be 'source' or 'destination'")
	}
	names := q["name"]
	if len(names) == 0 {
		return errorf(http.StatusBadRequest, "required query parameter 'name' not set")
	}
	if err := s.block(r, crdt.ScopeIntentions); err != nil {
		return err
	}
	idx := a.replica.ScopeIndex(crdt.ScopeIntentions)
	setIndex(w, idx)
	out := map[string][]apiIntention{}
	for _, n := range names {
		list := []apiIntention{}
		for _, in := range a.replica.MatchIntentions(n, by == "source") {
			list = append(list, toAPIIntention(in, idx))
		}
		out[n] = list
	}
	return writeJSON(w, out)
}

// intentionCheck serves /v1/connect/intentions/check?source=&destination=.
func (s *apiServer) intentionCheck(w http.ResponseWriter, r *http.Request, _ string) error {
	a := s.a
	q := r.URL.Query()
	src, dst := q.Get("source"), q.Get("destination")
	if src == "" || dst == "" {
		return errorf(http.StatusBadRequest, "required query parameters 'source' and 'destination' are missing")
	}
	setIndex(w, a.replica.ScopeIndex(crdt.ScopeIntentions))
	d := a.replica.CheckIntention(src, dst, a.defaultAllow())
	return writeJSON(w, map[string]bool{"Allowed": d.Allowed})
}

// agentAuthorize serves POST /v1/agent/connect/authorize {Target, ClientCertURI}.
func (s *apiServer) agentAuthorize(w http.ResponseWriter, r *http.Request, _ string) error {
	var body struct {
		Target        string
		ClientCertURI string
	}
	if err := decodeBody(r, &body); err != nil {
		return err
	}
	if body.Target == "" || body.ClientCertURI == "" {
		return errorf(http.StatusBadRequest, "Target and ClientCertURI are required")
	}
	src := body.ClientCertURI
	if i := strings.LastIndex(src, "/svc/"); i >= 0 {
		src = src[i+len("/svc/"):]
	}
	d := s.a.replica.CheckIntention(src, body.Target, s.a.defaultAllow())
	reason := "Default behavior configured by default_intention_policy (" + s.a.cfg.DefaultIntentionPolicy + ")"
	if d.Intention != nil {
		reason = fmt.Sprintf("Matched L4 intention: %s => %s", d.Intention.SourceName, d.Intention.DestinationName)
	}
	return writeJSON(w, map[string]any{"Authorized": d.Allowed, "Reason": reason})
}
