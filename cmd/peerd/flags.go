package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// newFlagSet returns a flag set that writes its usage to c.stderr and
// returns errors instead of exiting.
func newFlagSet(c *cli, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	fs.Usage = func() {
		fmt.Fprintf(c.stderr, "Usage: peerd %s\n\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args and maps flag's errors onto errHelp and errUsage.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageErrorf("%s: %v", fs.Name(), err)
	}
	return nil
}

// stringList is a repeatable string flag (-join a -join b).
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}
