package sim

import (
	"bufio"
	"flag"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
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
	tuneGC(t, sc.Peers)
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

// tuneGC trades memory for CPU in a large run, unless the user set GOGC
// or GOMEMLIMIT: the simulation allocates at a high rate (every message
// of every peer) with a live heap of a few GiB at 1,000 peers, so the
// default GOGC=100 spent about a third of the CPU in the collector. With
// GOGC=400 the heap may grow to 5× the live heap; a soft memory limit of
// half the machine's memory makes the collector work harder instead of
// exceeding it.
func tuneGC(t testing.TB, peers int) {
	t.Helper()
	if peers < 100 || os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	total := memTotal()
	if total == 0 {
		return
	}
	oldPct := debug.SetGCPercent(400)
	oldLim := debug.SetMemoryLimit(total / 2)
	t.Cleanup(func() {
		debug.SetGCPercent(oldPct)
		debug.SetMemoryLimit(oldLim)
	})
}

// memTotal returns the machine's memory in bytes from /proc/meminfo, or 0.
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}
