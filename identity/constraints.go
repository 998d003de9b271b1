package identity

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Constraints are what a certificate lets its subject do. A child
// certificate's constraints must be covered by its parent's.
//
// Service patterns: "web" matches exactly the service "web"; "web-*"
// matches every service whose name starts with "web-"; "*" matches every
// service. A '*' may appear only as the last character. Names use
// [A-Za-z0-9._-] and match case-sensitively. An empty list allows no service.
//
// KV prefixes: "config/web/" allows every key that starts with
// "config/web/"; "*" allows every key. The empty string is rejected (write
// "*" to mean all keys) and '*' may not appear anywhere else, so a prefix is
// always a literal. An empty list allows no KV write.
type Constraints struct {
	Services       []string // service-name patterns the subject may publish
	KVPrefixes     []string // KV key prefixes the subject may write
	SignIntentions bool     // the subject may sign intentions
	// DelegateDepth is how many further levels of certificates the subject
	// may issue below itself: 0 means it may not issue certificates, 1 that
	// it may issue certificates whose DelegateDepth is 0, and so on. At most
	// MaxChainDepth-1.
	DelegateDepth int
}

// rootConstraints is what a trusted root holds.
var rootConstraints = Constraints{
	Services:       []string{"*"},
	KVPrefixes:     []string{"*"},
	SignIntentions: true,
	DelegateDepth:  MaxChainDepth,
}

// validate checks the syntax of every pattern and prefix.
func (c Constraints) validate() error {
	if len(c.Services) > MaxPatterns {
		return fmt.Errorf("%d service patterns, more than %d", len(c.Services), MaxPatterns)
	}
	if len(c.KVPrefixes) > MaxPatterns {
		return fmt.Errorf("%d KV prefixes, more than %d", len(c.KVPrefixes), MaxPatterns)
	}
	for _, p := range c.Services {
		if err := validServicePattern(p); err != nil {
			return err
		}
	}
	for _, p := range c.KVPrefixes {
		if err := validKVPrefix(p); err != nil {
			return err
		}
	}
	if c.DelegateDepth < 0 || c.DelegateDepth > MaxChainDepth-1 {
		return fmt.Errorf("delegate depth %d outside 0..%d", c.DelegateDepth, MaxChainDepth-1)
	}
	return nil
}

func validServicePattern(p string) error {
	if p == "" {
		return fmt.Errorf("empty service pattern")
	}
	if len(p) > MaxPatternLen {
		return fmt.Errorf("service pattern longer than %d bytes", MaxPatternLen)
	}
	for i := 0; i < len(p); i++ {
		ch := p[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9', ch == '-', ch == '_', ch == '.':
		case ch == '*' && i == len(p)-1:
		case ch == '*':
			return fmt.Errorf("service pattern %q: '*' is allowed only at the end", p)
		default:
			return fmt.Errorf("service pattern %q: character %q not allowed (use A-Z a-z 0-9 . _ - and a trailing *)", p, ch)
		}
	}
	return nil
}

func validKVPrefix(p string) error {
	switch {
	case p == "":
		return fmt.Errorf(`empty KV prefix (write "*" for all keys)`)
	case p == "*":
		return nil
	case len(p) > MaxPatternLen:
		return fmt.Errorf("KV prefix longer than %d bytes", MaxPatternLen)
	case !utf8.ValidString(p):
		return fmt.Errorf("KV prefix %q is not valid UTF-8", p)
	case strings.Contains(p, "*"):
		return fmt.Errorf(`KV prefix %q: '*' is allowed only alone ("*" = all keys); prefixes are literal`, p)
	}
	for _, r := range p {
		if unicode.IsControl(r) {
			return fmt.Errorf("KV prefix %q contains a control character", p)
		}
	}
	return nil
}

// matchService reports whether pattern p allows the service name.
func matchService(p, name string) bool {
	if lit, ok := strings.CutSuffix(p, "*"); ok {
		return strings.HasPrefix(name, lit)
	}
	return p == name
}

// serviceCovered reports whether parent pattern p allows everything child pattern c allows.
func serviceCovered(p, c string) bool {
	if lit, ok := strings.CutSuffix(p, "*"); ok {
		// Every name c allows starts with c's literal part, which must start with lit.
		return strings.HasPrefix(strings.TrimSuffix(c, "*"), lit)
	}
	return p == c
}

// kvCovered reports whether parent prefix p allows every key child prefix c allows.
func kvCovered(p, c string) bool {
	if p == "*" {
		return true
	}
	return c != "*" && strings.HasPrefix(c, p)
}

// narrowedBy checks that child grants nothing beyond parent, except for the
// delegation depth, which the caller checks (it depends on position).
func (child Constraints) narrowedBy(parent Constraints) error {
	for _, c := range child.Services {
		if !anyOf(parent.Services, func(p string) bool { return serviceCovered(p, c) }) {
			return fmt.Errorf("service pattern %q is not covered by the parent's %s", c, listOrNone(parent.Services))
		}
	}
	for _, c := range child.KVPrefixes {
		if !anyOf(parent.KVPrefixes, func(p string) bool { return kvCovered(p, c) }) {
			return fmt.Errorf("KV prefix %q is not under the parent's %s", c, listOrNone(parent.KVPrefixes))
		}
	}
	if child.SignIntentions && !parent.SignIntentions {
		return fmt.Errorf("may sign intentions, but the parent may not")
	}
	return nil
}

// delegatedBy checks the delegation depth of a certificate against its
// parent's; on failure it returns the sentinel and the rule in words.
func (child Constraints) delegatedBy(parent Constraints) (detail string, sentinel error) {
	if parent.DelegateDepth < 1 {
		return "the issuer's delegate depth is 0", ErrNoDelegation
	}
	if child.DelegateDepth > parent.DelegateDepth-1 {
		return fmt.Sprintf("delegate depth %d, but the issuer's depth %d allows at most %d", child.DelegateDepth, parent.DelegateDepth, parent.DelegateDepth-1), ErrWidened
	}
	return "", nil
}

func anyOf(list []string, f func(string) bool) bool {
	for _, s := range list {
		if f(s) {
			return true
		}
	}
	return false
}

func listOrNone(list []string) string {
	if len(list) == 0 {
		return "(none)"
	}
	return "[" + strings.Join(list, " ") + "]"
}
