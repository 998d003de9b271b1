package peer

import (
	"context"
	"sort"
	"testing"
)

// TestDeregisterRemovesItsSidecar: deregistering a service removes the
// sidecar its registration declared (as Consul does), also after a
// restart; a connect-proxy registered on its own is left alone.
func TestDeregisterRemovesItsSidecar(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an agent")
	}
	dir := t.TempDir()
	root, node := newKeys(t)
	a := testAgent(t, dir, root, node, []string{"*"})
	ctx := context.Background()
	register := func(def ServiceDefinition) {
		t.Helper()
		if err := a.RegisterService(ctx, def, false); err != nil {
			t.Fatal(err)
		}
	}
	register(ServiceDefinition{Name: "par", ID: "par", Port: 1, Connect: &ConnectDefinition{SidecarService: &ServiceDefinition{}}})
	register(ServiceDefinition{Name: "web", ID: "web", Port: 2})
	register(ServiceDefinition{Name: "web-sidecar-proxy", ID: "web-sidecar-proxy", Kind: "connect-proxy", Port: 3,
		Proxy: &ProxyDefinition{DestinationServiceName: "web", DestinationServiceID: "web"}})
	ids := func() []string {
		var out []string
		for id := range a.localServices() {
			out = append(out, id)
		}
		sort.Strings(out)
		return out
	}
	if got := ids(); len(got) != 4 {
		t.Fatalf("registered: %v", got)
	}
	// Across a restart the registry remembers which sidecar is par's.
	a.Close()
	a = testAgent(t, dir, root, node, []string{"*"})
	defer a.Close()
	if err := a.DeregisterService(ctx, "par"); err != nil {
		t.Fatal(err)
	}
	if err := a.DeregisterService(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if got := ids(); len(got) != 1 || got[0] != "web-sidecar-proxy" {
		t.Fatalf("after deregistering par and web: %v, want only the separately registered web-sidecar-proxy", got)
	}
}
