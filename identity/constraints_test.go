package identity

import (
	"strings"
	"testing"
)

func TestServiceCovered(t *testing.T) {
	cases := []struct {
		parent, child string
		want          bool
	}{
		{"*", "anything", true},
		{"*", "web-*", true},
		{"*", "*", true},
		{"web-*", "web-1", true},
		{"web-*", "web-1*", true},
		{"web-*", "web-*", true},
		{"web-*", "web*", false},
		{"web-*", "*", false},
		{"web-*", "web", false},
		{"web", "web", true},
		{"web", "web-*", false},
		{"web", "web*", false},
		{"web", "*", false},
	}
	for _, c := range cases {
		if got := serviceCovered(c.parent, c.child); got != c.want {
			t.Errorf("serviceCovered(%q, %q) = %v, want %v", c.parent, c.child, got, c.want)
		}
	}
}

func TestKVCovered(t *testing.T) {
	cases := []struct {
		parent, child string
		want          bool
	}{
		{"*", "*", true},
		{"*", "a/", true},
		{"a/", "a/b/", true},
		{"a/", "a/", true},
		{"a/", "a", false},
		{"a/", "*", false},
		{"a/", "b/", false},
	}
	for _, c := range cases {
		if got := kvCovered(c.parent, c.child); got != c.want {
			t.Errorf("kvCovered(%q, %q) = %v, want %v", c.parent, c.child, got, c.want)
		}
	}
}

func TestConstraintsValidate(t *testing.T) {
	many := make([]string, MaxPatterns+1)
	for i := range many {
		many[i] = "s"
	}
	cases := []struct {
		name string
		c    Constraints
		want string // "" = valid
	}{
		{"empty", Constraints{}, ""},
		{"typical", Constraints{Services: []string{"web", "web-*", "*"}, KVPrefixes: []string{"config/web/", "*"}, SignIntentions: true, DelegateDepth: 7}, ""},
		{"empty service", Constraints{Services: []string{""}}, "empty service pattern"},
		{"inner star", Constraints{Services: []string{"w*b"}}, "only at the end"},
		{"bad char", Constraints{Services: []string{"web/1"}}, "not allowed"},
		{"long service", Constraints{Services: []string{strings.Repeat("a", MaxPatternLen+1)}}, "longer than"},
		{"too many", Constraints{Services: many}, "more than"},
		{"empty prefix", Constraints{KVPrefixes: []string{""}}, `write "*" for all keys`},
		{"glob prefix", Constraints{KVPrefixes: []string{"config/*"}}, "prefixes are literal"},
		{"control char", Constraints{KVPrefixes: []string{"a\nb"}}, "control character"},
		{"bad utf8", Constraints{KVPrefixes: []string{"a\xff"}}, "UTF-8"},
		{"depth too big", Constraints{DelegateDepth: MaxChainDepth}, "outside"},
		{"negative depth", Constraints{DelegateDepth: -1}, "outside"},
	}
	for _, c := range cases {
		err := c.c.validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
}

func TestAllCapabilities(t *testing.T) {
	c := AllCapabilities(pubOf(testKey("dev")))
	if c.Root || !c.MayPublishService("x") || !c.MayWriteKV("any/key") || !c.SignIntentions || !c.ValidAt(t0) {
		t.Fatalf("%+v", c)
	}
}
