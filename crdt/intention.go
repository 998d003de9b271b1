package crdt

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// Intention actions.
const (
	ActionAllow = "allow"
	ActionDeny  = "deny"
)

// Wildcard matches any service name in an intention's source or destination.
const Wildcard = "*"

// Intention is a decoded, verified intention document. Its signed form is
// opaque to crdt: the Authorizer decodes and verifies it. A deletion is a
// newer Version of the same (SourceName, DestinationName) with Deleted set.
type Intention struct {
	ID              string                `cbor:"1,keyasint,omitempty"`
	SourceName      string                `cbor:"2,keyasint,omitempty"`
	DestinationName string                `cbor:"3,keyasint,omitempty"`
	Action          string                `cbor:"4,keyasint,omitempty"` // allow|deny; empty when Permissions are set
	Permissions     []IntentionPermission `cbor:"5,keyasint,omitempty"`
	Description     string                `cbor:"6,keyasint,omitempty"`
	Meta            map[string]string     `cbor:"7,keyasint,omitempty"`
	Version         uint64                `cbor:"8,keyasint,omitempty"`
	Deleted         bool                  `cbor:"9,keyasint,omitempty"`
}

// IntentionPermission is one L7 rule; rules are evaluated in order.
type IntentionPermission struct {
	Action string                   `cbor:"1,keyasint,omitempty"` // allow|deny
	HTTP   *IntentionHTTPPermission `cbor:"2,keyasint,omitempty"`
}

// IntentionHTTPPermission matches an HTTP request; every set field must match.
type IntentionHTTPPermission struct {
	PathExact  string                          `cbor:"1,keyasint,omitempty"`
	PathPrefix string                          `cbor:"2,keyasint,omitempty"`
	PathRegex  string                          `cbor:"3,keyasint,omitempty"`
	Methods    []string                        `cbor:"4,keyasint,omitempty"`
	Header     []IntentionHTTPHeaderPermission `cbor:"5,keyasint,omitempty"`
}

// IntentionHTTPHeaderPermission matches one request header.
type IntentionHTTPHeaderPermission struct {
	Name    string `cbor:"1,keyasint,omitempty"`
	Present bool   `cbor:"2,keyasint,omitempty"`
	Exact   string `cbor:"3,keyasint,omitempty"`
	Prefix  string `cbor:"4,keyasint,omitempty"`
	Suffix  string `cbor:"5,keyasint,omitempty"`
	Regex   string `cbor:"6,keyasint,omitempty"`
	Invert  bool   `cbor:"7,keyasint,omitempty"`
}

// Validate rejects an intention that cannot be evaluated.
func (in *Intention) Validate() error {
	switch {
	case in.SourceName == "" || in.DestinationName == "":
		return fmt.Errorf("crdt: intention needs a source and a destination")
	case in.Deleted:
		return nil
	case len(in.Permissions) > 0 && in.Action != "":
		return fmt.Errorf("crdt: intention %s -> %s: action must be empty when permissions are set", in.SourceName, in.DestinationName)
	case len(in.Permissions) == 0 && in.Action != ActionAllow && in.Action != ActionDeny:
		return fmt.Errorf("crdt: intention %s -> %s: action %q is not allow or deny", in.SourceName, in.DestinationName, in.Action)
	}
	for i, p := range in.Permissions {
		if p.Action != ActionAllow && p.Action != ActionDeny {
			return fmt.Errorf("crdt: intention %s -> %s: permission %d: action %q is not allow or deny", in.SourceName, in.DestinationName, i, p.Action)
		}
		if p.HTTP == nil {
			continue
		}
		if p.HTTP.PathRegex != "" {
			if _, err := regexp.Compile(p.HTTP.PathRegex); err != nil {
				return fmt.Errorf("crdt: intention permission %d: path regex: %w", i, err)
			}
		}
		for _, h := range p.HTTP.Header {
			if h.Regex != "" {
				if _, err := regexp.Compile(h.Regex); err != nil {
					return fmt.Errorf("crdt: intention permission %d: header %q regex: %w", i, h.Name, err)
				}
			}
		}
	}
	return nil
}

// Precedence is Consul's intention precedence without namespaces: an exact
// name beats a wildcard, and the destination counts before the source.
func (in *Intention) Precedence() int {
	srcW, dstW := in.SourceName == Wildcard, in.DestinationName == Wildcard
	switch {
	case !srcW && !dstW:
		return 9
	case srcW && !dstW:
		return 8
	case !srcW && dstW:
		return 6
	default:
		return 5
	}
}

func (in *Intention) matches(src, dst string) bool {
	return (in.SourceName == Wildcard || in.SourceName == src) &&
		(in.DestinationName == Wildcard || in.DestinationName == dst)
}

// Decision is the result of evaluating intentions for a connection.
type Decision struct {
	// Allowed is the L4 decision. An intention with L7 Permissions allows the
	// connection; the caller then applies Intention.EvaluateHTTP per request.
	Allowed bool
	// Intention is the deciding intention, nil when the default applied.
	Intention *Intention
}

// evaluateIntentions picks the highest-precedence live intention matching
// src -> dst; deny beats allow at equal precedence. With no match the
// default applies.
func evaluateIntentions(all []Intention, src, dst string, defaultAllow bool) Decision {
	var best *Intention
	for i := range all {
		in := &all[i]
		if in.Deleted || !in.matches(src, dst) {
			continue
		}
		if best == nil || in.Precedence() > best.Precedence() ||
			(in.Precedence() == best.Precedence() && in.Action == ActionDeny && best.Action != ActionDeny) {
			best = in
		}
	}
	if best == nil {
		return Decision{Allowed: defaultAllow}
	}
	c := *best
	return Decision{Allowed: c.Action != ActionDeny, Intention: &c}
}

// sortIntentions orders by precedence (highest first), then names.
func sortIntentions(ins []Intention) {
	slices.SortFunc(ins, func(a, b Intention) int {
		if pa, pb := a.Precedence(), b.Precedence(); pa != pb {
			return pb - pa
		}
		if c := strings.Compare(a.DestinationName, b.DestinationName); c != 0 {
			return c
		}
		return strings.Compare(a.SourceName, b.SourceName)
	})
}

// HTTPRequest is what L7 permissions look at. Header returns the first value
// of a header (canonical or not; matching is the caller's convention).
type HTTPRequest struct {
	Method string
	Path   string
	Header func(name string) (string, bool)
}

// EvaluateHTTP applies the intention to one request. Permissions are tried
// in order and the first that matches decides; with no permissions the
// intention's Action decides. matched is false when no permission matched:
// the caller then applies its default (peerd's is deny).
func (in *Intention) EvaluateHTTP(req HTTPRequest) (allowed, matched bool) {
	if len(in.Permissions) == 0 {
		return in.Action != ActionDeny, true
	}
	for _, p := range in.Permissions {
		if p.HTTP == nil || p.HTTP.match(req) {
			return p.Action == ActionAllow, true
		}
	}
	return false, false
}

func (h *IntentionHTTPPermission) match(req HTTPRequest) bool {
	switch {
	case h.PathExact != "" && req.Path != h.PathExact:
		return false
	case h.PathPrefix != "" && !strings.HasPrefix(req.Path, h.PathPrefix):
		return false
	case h.PathRegex != "" && !regexMatch(h.PathRegex, req.Path):
		return false
	}
	if len(h.Methods) > 0 && !slices.ContainsFunc(h.Methods, func(m string) bool { return strings.EqualFold(m, req.Method) }) {
		return false
	}
	for _, hp := range h.Header {
		var v string
		var ok bool
		if req.Header != nil {
			v, ok = req.Header(hp.Name)
		}
		m := ok
		switch {
		case hp.Present:
		case hp.Exact != "":
			m = ok && v == hp.Exact
		case hp.Prefix != "":
			m = ok && strings.HasPrefix(v, hp.Prefix)
		case hp.Suffix != "":
			m = ok && strings.HasSuffix(v, hp.Suffix)
		case hp.Regex != "":
			m = ok && regexMatch(hp.Regex, v)
		}
		if m == hp.Invert {
			return false
		}
	}
	return true
}

// regexMatch matches the whole string, as Envoy does; a bad pattern
// (rejected by Validate anyway) never matches.
func regexMatch(pattern, s string) bool {
	re := compileCached(pattern)
	return re != nil && re.MatchString(s)
}

// regexCache holds compiled L7 patterns; patterns come only from signed
// intentions, and the cache is reset when it reaches regexCacheMax.
var regexCache struct {
	mu sync.Mutex // guards m
	m  map[string]*regexp.Regexp
}

const regexCacheMax = 1024

func compileCached(pattern string) *regexp.Regexp {
	regexCache.mu.Lock()
	defer regexCache.mu.Unlock()
	if re, ok := regexCache.m[pattern]; ok {
		return re
	}
	re, err := regexp.Compile("^(?:" + pattern + ")$")
	if err != nil {
		re = nil
	}
	if regexCache.m == nil || len(regexCache.m) >= regexCacheMax {
		regexCache.m = map[string]*regexp.Regexp{}
	}
	regexCache.m[pattern] = re
	return re
}
