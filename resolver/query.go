package resolver

import (
	"encoding/hex"
	"net/netip"
	"strings"
)

// kind is the form of a name inside the domain.
type kind uint8

const (
	kindInvalid kind = iota // inside the domain but not a form we answer: NXDOMAIN
	kindApex                // the domain itself (SOA, NS)
	kindNS                  // the NS target of the domain
	kindService             // NAME.service, TAG.NAME.service, _NAME._TAG.service
	kindNode                // NODE.node
	kindAddr                // HEXIP.addr
	kindConnect             // NAME.connect
)

// query is a parsed name inside the domain. Its strings are substrings of
// the lower-cased question name: parsing does not allocate.
type query struct {
	kind    kind
	name    string // service or node name
	tag     string // "" means any tag
	rfc2782 bool   // _NAME._TAG.service form
	addr    netip.Addr
}

// maxLabels bounds how many labels a name inside the domain may have.
const maxLabels = 8

// parseName parses lname, a lower-case fully qualified name, against the
// settings' domain. inDomain is false for names outside the domain (they go
// to the recursors).
func (s *settings) parseName(lname string) (q query, inDomain bool) {
	if lname == s.Domain {
		return query{kind: kindApex}, true
	}
	if !strings.HasSuffix(lname, s.suffix) {
		return query{}, false
	}
	rest := lname[:len(lname)-len(s.suffix)]
	if rest == "" {
		return query{}, true
	}
	if lname == s.nsTarget {
		return query{kind: kindNS}, true
	}

	// Split into labels without allocating. Labels containing escaped dots
	// are not names we answer; they simply fail to match below.
	var labels [maxLabels]string
	n := 0
	for {
		i := strings.LastIndexByte(rest, '.')
		if n == maxLabels {
			return query{}, true
		}
		labels[maxLabels-1-n] = rest[i+1:]
		n++
		if i < 0 {
			break
		}
		rest = rest[:i]
	}
	ls := labels[maxLabels-n:]
	for _, l := range ls {
		if l == "" {
			return query{}, true
		}
	}

	// As in Consul, the query kind is the rightmost keyword; what follows it
	// may only be the datacenter.
	k := len(ls) - 1
	if kindOf(ls[k]) == kindInvalid {
		if len(ls) < 2 || kindOf(ls[k-1]) == kindInvalid {
			return query{}, true
		}
		if ls[k] != s.Datacenter {
			return query{}, true
		}
		k--
	}
	q.kind = kindOf(ls[k])
	parts := ls[:k]
	switch q.kind {
	case kindService:
		switch len(parts) {
		case 1:
			q.name = parts[0]
		case 2:
			if strings.HasPrefix(parts[0], "_") && strings.HasPrefix(parts[1], "_") {
				q.rfc2782 = true
				q.name = parts[0][1:]
				q.tag = parts[1][1:]
				if q.tag == "tcp" {
					q.tag = "" // _NAME._tcp means any tag (RFC 2782 protocol label)
				}
			} else {
				q.tag, q.name = parts[0], parts[1]
			}
		default:
			q.kind = kindInvalid
		}
		if q.name == "" {
			q.kind = kindInvalid
		}
	case kindNode:
		if len(parts) == 0 {
			q.kind = kindInvalid
			break
		}
		// Node names may contain dots: NODE is everything before ".node".
		q.name = joined(lname, parts)
	case kindConnect:
		if len(parts) != 1 {
			q.kind = kindInvalid
			break
		}
		q.name = parts[0]
	case kindAddr:
		if len(parts) != 1 {
			q.kind = kindInvalid
			break
		}
		a, ok := parseHexAddr(parts[0])
		if !ok {
			q.kind = kindInvalid
			break
		}
		q.addr = a
	}
	return q, true
}

// joined returns the prefix of name spanned by parts, the leading labels of
// name (they are consecutive substrings of it, the first at offset 0).
func joined(name string, parts []string) string {
	end := len(parts) - 1
	for _, p := range parts {
		end += len(p)
	}
	return name[:end]
}

// kindOf maps a keyword label to its kind.
func kindOf(label string) kind {
	switch label {
	case "service":
		return kindService
	case "node":
		return kindNode
	case "addr":
		return kindAddr
	case "connect":
		return kindConnect
	}
	return kindInvalid
}

// parseHexAddr decodes Consul's HEXIP label: 8 hex digits for IPv4, 32 for
// IPv6.
func parseHexAddr(label string) (netip.Addr, bool) {
	switch len(label) {
	case 8:
		var b [4]byte
		if _, err := hex.Decode(b[:], []byte(label)); err != nil {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4(b), true
	case 32:
		var b [16]byte
		if _, err := hex.Decode(b[:], []byte(label)); err != nil {
			return netip.Addr{}, false
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

// hexAddr encodes an address as Consul's HEXIP label.
func hexAddr(a netip.Addr) string {
	if a.Is4() {
		b := a.As4()
		return hex.EncodeToString(b[:])
	}
	b := a.As16()
	return hex.EncodeToString(b[:])
}
