package identity

import (
	"crypto/ed25519"
	"strings"
	"time"
)

// Capabilities are the rights a verified key holds: the constraints of its
// chain's leaf (or all rights for a trusted root). Values returned by the
// Verifier share their slices with its cache; treat them as read-only.
type Capabilities struct {
	Key            ed25519.PublicKey // the verified key
	Name           string            // leaf certificate name; "" for a root
	Root           bool              // Key is a trusted root (empty chain)
	Services       []string          // service patterns it may publish
	KVPrefixes     []string          // KV prefixes it may write ("*" = all)
	SignIntentions bool              // it may sign intentions
	DelegateDepth  int               // further certificate levels it may issue
	// NotBefore and NotAfter bound the period in which these capabilities
	// hold (the intersection of the chain's validity windows); both are zero
	// for a root, whose rights do not expire.
	NotBefore, NotAfter time.Time
	ChainHash           [32]byte // Chain.Hash of the verified chain
}

// AllCapabilities returns every right for key, as a trusted root holds them.
// It is meant for development mode (no root configured) and for tests; the
// result says Root: false, so code that needs a real root can tell.
func AllCapabilities(key ed25519.PublicKey) Capabilities {
	return Capabilities{
		Key:            key,
		Name:           "dev",
		Services:       []string{"*"},
		KVPrefixes:     []string{"*"},
		SignIntentions: true,
		DelegateDepth:  MaxChainDepth,
	}
}

func rootCapabilities(key ed25519.PublicKey) Capabilities {
	return Capabilities{
		Key:            key,
		Root:           true,
		Services:       []string{"*"}, // fresh slices: callers may not, but could, modify them
		KVPrefixes:     []string{"*"},
		SignIntentions: true,
		DelegateDepth:  rootConstraints.DelegateDepth,
	}
}

// MayPublishService reports whether a service named name may be published.
func (c Capabilities) MayPublishService(name string) bool {
	if name == "" {
		return false
	}
	for _, p := range c.Services {
		if matchService(p, name) {
			return true
		}
	}
	return false
}

// MayWriteKV reports whether the KV key may be written (or deleted).
func (c Capabilities) MayWriteKV(key string) bool {
	for _, p := range c.KVPrefixes {
		if p == "*" || strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

// ValidAt reports whether the capabilities hold at now.
func (c Capabilities) ValidAt(now time.Time) bool {
	if c.Root || (c.NotBefore.IsZero() && c.NotAfter.IsZero()) {
		return true
	}
	return !now.Before(c.NotBefore) && now.Before(c.NotAfter)
}
