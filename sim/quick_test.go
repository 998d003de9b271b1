package sim

import (
	"os"
	"testing"
	"testing/synctest"
	"time"
)

func TestQuick(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		res, err := Run(Scenario{Peers: 10, Seed: 1, Network: LinkProfile{Latency: 5 * time.Millisecond},
			Duration: 10 * time.Second, Workload: Workload{Rate: 20, Reads: 0.5, Deletes: 0.2, Keys: 20},
			Events: []Event{{At: 2 * time.Second, Action: "partition", Node: -1}, {At: 6 * time.Second, Action: "heal"}}}, os.Stderr)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%+v", *res)
	})
}
