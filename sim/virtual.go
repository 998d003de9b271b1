package sim

import (
	"io"
	"testing"
	"testing/synctest"
	"time"
)

// RunVirtual runs the scenario inside a testing/synctest bubble, so that
// time is virtual: a run of ten virtual minutes takes as long as the CPU
// work it does. It must be called from a test (synctest needs a
// *testing.T), not from inside another bubble.
func RunVirtual(t *testing.T, sc Scenario, log io.Writer) (*Result, error) {
	t.Helper()
	var (
		res *Result
		err error
	)
	synctest.Test(t, func(t *testing.T) {
		res, err = Run(sc, log)
		// Stopped peers leave goroutines that end on their own timeouts
		// (memberlist stream deadlines, dial timeouts); synctest requires
		// every bubble goroutine to exit before the bubble's main does,
		// and virtual time no longer advances after that.
		time.Sleep(2 * time.Minute)
	})
	return res, err
}
