package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
)

// simCommands is `peerd sim`: it runs a simulation scenario. The
// simulator needs testing/synctest (virtual time), which needs a
// *testing.T, so the simulation lives in the sim package's test binary
// (`make build` builds it as bin/peerd-sim.test next to peerd); this
// command finds it and execs it with -test.run=^TestScenarioCLI$.
func simCommands() []command {
	return []command{{name: "sim", synopsis: "simulate many peers with faults in virtual time (docs/SIM.md)", run: runSim}}
}

// simBinaryEnv overrides where peerd looks for the sim test binary.
const simBinaryEnv = "PEERD_SIM_BINARY"

func runSim(ctx context.Context, c *cli, args []string) error {
	fs := newFlagSet(c, "sim", "sim -scenario FILE [-seed N] [-out DIR] [-peers N] [-mode plumtree|memberlist] [-membership serf|static] [-v]")
	scenario := fs.String("scenario", "", "scenario file (HCL), e.g. sim/scenarios/partition.hcl")
	seed := fs.Uint64("seed", 0, "seed of every random choice; 0 keeps the scenario's (default 1)")
	out := fs.String("out", "", "directory for summary.txt, CSV files and SVG plots (empty: summary on stdout only)")
	peers := fs.Int("peers", 0, "override the number of peers")
	mode := fs.String("mode", "", "override the dissemination: plumtree or memberlist (baseline)")
	membership := fs.String("membership", "", "override the membership: serf (real serf/memberlist) or static (lighter, for scale)")
	verbose := fs.Bool("v", false, "print progress lines")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *scenario == "" {
		return usageErrorf("sim: -scenario is required")
	}
	bin, err := simBinary(c)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(*scenario)
	if err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("sim: %w", err)
	}
	targs := []string{"-test.run=^TestScenarioCLI$", "-test.timeout=0", "-test.count=1",
		"-scenario=" + abs, "-seed=" + strconv.FormatUint(*seed, 10)}
	if *out != "" {
		o, err := filepath.Abs(*out)
		if err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		targs = append(targs, "-out="+o)
	}
	if *peers > 0 {
		targs = append(targs, "-peers="+strconv.Itoa(*peers))
	}
	if *mode != "" {
		targs = append(targs, "-mode="+*mode)
	}
	if *membership != "" {
		targs = append(targs, "-membership="+*membership)
	}
	if *verbose {
		targs = append(targs, "-test.v", "-progress")
	}
	cmd := exec.CommandContext(ctx, bin, targs...)
	cmd.Stdout, cmd.Stderr = c.stdout, c.stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("sim: the run failed its checkers or could not run (exit status %d)", ee.ExitCode())
		}
		return fmt.Errorf("sim: %w", err)
	}
	return nil
}

// simBinary finds the sim test binary: $PEERD_SIM_BINARY, else
// peerd-sim.test next to this executable.
func simBinary(c *cli) (string, error) {
	if p := c.getenv(simBinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("sim: %s=%s: %w", simBinaryEnv, p, err)
		}
		return p, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("sim: %w", err)
	}
	p := filepath.Join(filepath.Dir(self), "peerd-sim.test")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("sim: the simulator binary %s is missing: build it with `make build` "+
			"(or `go test -c -o %s ./sim`), or point %s at it", p, p, simBinaryEnv)
	}
	return p, nil
}
