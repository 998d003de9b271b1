package sim

import (
	"flag"
	"io"
	"os"
	"testing"
	"time"
)

// Flags of TestScenarioCLI, which `peerd sim` execs (see docs/SIM.md).
var (
	flagScenario = flag.String("scenario", "", "scenario file for TestScenarioCLI")
	flagSeed     = flag.Uint64("seed", 0, "seed override for TestScenarioCLI (0: the scenario's)")
	flagOut      = flag.String("out", "", "report directory for TestScenarioCLI")
	flagPeers    = flag.Int("peers", 0, "peers override for TestScenarioCLI")
	flagMode     = flag.String("mode", "", "mode override for TestScenarioCLI")
	flagMember   = flag.String("membership", "", "membership override for TestScenarioCLI (serf or static)")
	flagProgress = flag.Bool("progress", false, "print progress lines")
)

// TestScenarioCLI runs one scenario file; it is what `peerd sim` runs.
// Without -scenario it is skipped.
func TestScenarioCLI(t *testing.T) {
	if *flagScenario == "" {
		t.Skip("no -scenario given")
	}
	sc, err := LoadScenario(*flagScenario)
	if err != nil {
		t.Fatal(err)
	}
	if *flagSeed != 0 {
		sc.Seed = *flagSeed
	}
	if *flagPeers > 0 {
		sc.Peers = *flagPeers
	}
	if *flagMode != "" {
		sc.Mode = *flagMode
	}
	if *flagMember != "" {
		sc.Membership = *flagMember
	}
	var log io.Writer
	if *flagProgress {
		log = os.Stderr
	}
	res, err := RunVirtual(t, *sc, log)
	if err != nil {
		t.Fatal(err)
	}
	res.WriteSummary(os.Stdout)
	if *flagOut != "" {
		if err := res.WriteReport(*flagOut); err != nil {
			t.Fatal(err)
		}
		os.Stdout.WriteString("report written to " + *flagOut + "\n")
	}
	if !res.OK() {
		t.Fail()
	}
}

func flagDuration(name string, def time.Duration, usage string) *time.Duration {
	return flag.Duration(name, def, usage)
}
