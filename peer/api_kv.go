package peer

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/peerd/peerd/crdt"
)

// kvMaxValue is Consul's default KV value limit (kv_max_value_size).
const kvMaxValue = 512 * 1024

// apiKVPair is Consul's KV entry shape.
type apiKVPair struct {
	LockIndex   uint64
	Key         string
	Flags       uint64
	Value       []byte
	CreateIndex uint64
	ModifyIndex uint64
}

// kv serves /v1/kv/<key>. Keys are taken from the raw path: "a//b" stays
// "a//b" (Fabio relies on it).
func (s *apiServer) kv(w http.ResponseWriter, r *http.Request, key string) error {
	switch r.Method {
	case http.MethodGet:
		return s.kvGet(w, r, key)
	case http.MethodPut:
		return s.kvPut(w, r, key)
	default:
		return s.kvDelete(w, r, key)
	}
}

func (s *apiServer) kvGet(w http.ResponseWriter, r *http.Request, key string) error {
	rep := s.a.replica
	minIndex, wait, err := blockingParams(r)
	if err != nil {
		return err
	}
	scope := crdt.ScopeKV + key
	waitFor(r.Context(), minIndex, wait, func() (uint64, <-chan struct{}) { return rep.WatchIndex(scope) })
	setIndex(w, rep.ScopeIndex(scope))
	q := r.URL.Query()
	switch {
	case flagSet(r, "keys"):
		keys := rep.KVKeys(key, q.Get("separator"))
		if len(keys) == 0 {
			w.WriteHeader(http.StatusNotFound)
			return nil
		}
		return writeJSON(w, keys)
	case flagSet(r, "recurse"):
		pairs := rep.KVList(key)
		if len(pairs) == 0 {
			w.WriteHeader(http.StatusNotFound)
			return nil
		}
		out := make([]apiKVPair, len(pairs))
		for i, p := range pairs {
			out[i] = toAPIKV(p)
		}
		return writeJSON(w, out)
	default:
		p, ok := rep.KVGet(key)
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			return nil
		}
		if len(p.Conflicts) > 0 {
			// peerd extension: a concurrent write lost to this one.
			w.Header().Set("X-Peerd-Conflicts", strconv.Itoa(len(p.Conflicts)))
		}
		if flagSet(r, "raw") {
			w.Header().Set("Content-Type", "application/octet-stream")
			_, err := w.Write(p.Value)
			return err
		}
		return writeJSON(w, []apiKVPair{toAPIKV(p)})
	}
}

func toAPIKV(p crdt.KVPair) apiKVPair {
	v := p.Value
	if len(v) == 0 {
		v = nil
	}
	return apiKVPair{Key: p.Key, Flags: p.Flags, Value: v, CreateIndex: p.CreateIndex, ModifyIndex: p.ModifyIndex, LockIndex: p.LockIndex}
}

// errNoSessions explains why session-based KV operations are refused.
var errNoSessions = errorf(http.StatusBadRequest,
	"peerd does not support sessions (acquire/release): locks need consensus, and peerd has no servers; see docs/COMPATIBILITY.md")

func (s *apiServer) kvPut(w http.ResponseWriter, r *http.Request, key string) error {
	if key == "" {
		return errorf(http.StatusBadRequest, "Missing key name")
	}
	q := r.URL.Query()
	if flagSet(r, "acquire") || flagSet(r, "release") {
		return errNoSessions
	}
	if err := s.a.mayWriteKV(key); err != nil {
		return err
	}
	var flags uint64
	if v := q.Get("flags"); v != "" {
		f, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return errorf(http.StatusBadRequest, "Invalid flags: %q is not a number", v)
		}
		flags = f
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, kvMaxValue+1))
	if err != nil {
		return errorf(http.StatusBadRequest, "reading body: %v", err)
	}
	if len(body) > kvMaxValue {
		return errorf(http.StatusRequestEntityTooLarge,
			"Value exceeds %d byte limit (kv_max_value_size)", kvMaxValue)
	}
	ok := true
	if v := q.Get("cas"); v != "" {
		idx, perr := strconv.ParseUint(v, 10, 64)
		if perr != nil {
			return errorf(http.StatusBadRequest, "Invalid cas index: %q is not a number", v)
		}
		ok, err = s.a.commitCAS(r.Context(), func(now time.Time) (bool, *crdt.Delta, error) {
			return s.a.replica.KVCAS(key, body, flags, idx, now)
		})
	} else {
		err = s.a.commit(r.Context(), func(now time.Time) (*crdt.Delta, error) {
			return s.a.replica.KVPut(key, body, flags, now)
		})
	}
	if err != nil {
		return kvWriteError(err)
	}
	return writeJSON(w, ok)
}

func (s *apiServer) kvDelete(w http.ResponseWriter, r *http.Request, key string) error {
	q := r.URL.Query()
	if err := s.a.mayWriteKV(key); err != nil {
		return err
	}
	ok := true
	var err error
	switch {
	case flagSet(r, "recurse"):
		err = s.a.commit(r.Context(), func(now time.Time) (*crdt.Delta, error) {
			return s.a.replica.KVDeleteTree(key, now)
		})
	case q.Get("cas") != "":
		idx, perr := strconv.ParseUint(q.Get("cas"), 10, 64)
		if perr != nil {
			return errorf(http.StatusBadRequest, "Invalid cas index: %q is not a number", q.Get("cas"))
		}
		ok, err = s.a.commitCAS(r.Context(), func(now time.Time) (bool, *crdt.Delta, error) {
			return s.a.replica.KVDeleteCAS(key, idx, now)
		})
	default:
		err = s.a.commit(r.Context(), func(now time.Time) (*crdt.Delta, error) {
			return s.a.replica.KVDelete(key, now)
		})
	}
	if err != nil {
		return kvWriteError(err)
	}
	return writeJSON(w, ok)
}

func kvWriteError(err error) error {
	switch {
	case errors.Is(err, crdt.ErrValueTooLarge):
		return errorf(http.StatusRequestEntityTooLarge, "%v", err)
	case errors.Is(err, crdt.ErrNotFound):
		return nil
	case errors.Is(err, ErrStoreUnavailable):
		return errorf(http.StatusServiceUnavailable, "%v", err)
	case errors.Is(err, crdt.ErrUnauthorized):
		return errorf(http.StatusForbidden, "%v", err)
	}
	return err
}

// mayWriteKV refuses, before anything is written, a key outside this node's
// certificate: every other peer would refuse the record anyway.
func (a *Agent) mayWriteKV(key string) error {
	caps, err := a.trust.capsOf(a.id)
	if err != nil {
		return errorf(http.StatusForbidden, "this node's certificate is not valid: %v", err)
	}
	if !caps.MayWriteKV(key) {
		return errorf(http.StatusForbidden,
			"this node's certificate does not allow writing %q (allowed prefixes: %v)", key, caps.KVPrefixes)
	}
	return nil
}
