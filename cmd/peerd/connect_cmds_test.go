package main

import (
	"net/netip"
	"strings"
	"testing"
)

func TestUpstreamEnv(t *testing.T) {
	ups, err := parseUpstreams("tax=127.0.0.1:9191,billing-v2=127.0.0.2:9292")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(upstreamEnv(ups), " ")
	want := "PEERD_UPSTREAM_BILLING_V2_ADDR=127.0.0.2:9292 PEERD_UPSTREAM_BILLING_V2_HOST=127.0.0.2 PEERD_UPSTREAM_BILLING_V2_PORT=9292 " +
		"PEERD_UPSTREAM_TAX_ADDR=127.0.0.1:9191 PEERD_UPSTREAM_TAX_HOST=127.0.0.1 PEERD_UPSTREAM_TAX_PORT=9191"
	if got != want {
		t.Fatalf("env:\n got %s\nwant %s", got, want)
	}
	for _, bad := range []string{"tax", "tax=nothere", "tax=127.0.0.1"} {
		if _, err := parseUpstreams(bad); err == nil {
			t.Errorf("parseUpstreams(%q) accepted", bad)
		}
	}
	if ups[0].Addr != netip.MustParseAddrPort("127.0.0.2:9292") {
		t.Errorf("sorted wrong: %v", ups)
	}
}

func TestConnectUsage(t *testing.T) {
	for _, args := range [][]string{{"connect"}, {"connect", "nope"}, {"connect", "run"}, {"connect", "run", "-service", "x"},
		{"connect", "proxy"}, {"demo-service"}} {
		var out strings.Builder
		c := &cli{stdout: &out, stderr: &out, getenv: func(string) string { return "" }}
		if err := dispatch(t.Context(), c, args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}
