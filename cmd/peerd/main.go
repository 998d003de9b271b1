// Command peerd is the peerd binary: the agent, the operator CLI (keys,
// certificates, revocations, KV, services, intentions) and the simulator.
//
// main is the only place that calls os.Exit. Every subcommand returns an
// error; main prints it on one line and exits non-zero.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// cli is what a subcommand may touch of the outside world. Tests build one
// with buffers instead of the process's streams.
type cli struct {
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// command is one peerd subcommand. run gets the arguments after the
// subcommand name (and after the sub-subcommand for groups such as "cert").
type command struct {
	name     string
	synopsis string
	run      func(ctx context.Context, c *cli, args []string) error
}

// errUsage marks an error caused by how the command was called; main exits
// with status 2 for it, as flag does.
var errUsage = errors.New("usage")

// usageErrorf returns an error that wraps errUsage.
func usageErrorf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errUsage}, args...)...)
}

// commands lists every subcommand. Add new ones here, one line each.
func commands() []command {
	cmds := []command{
		{name: "version", synopsis: "print the peerd version", run: runVersion},
	}
	cmds = append(cmds, identityCommands()...)
	cmds = append(cmds, agentCommands()...)
	cmds = append(cmds, operatorCommands()...)
	cmds = append(cmds, consulCommands()...)
	cmds = append(cmds, connectCommands()...)
	cmds = append(cmds, simCommands()...)
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

// version is set at link time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func runVersion(_ context.Context, c *cli, _ []string) error {
	fmt.Fprintf(c.stdout, "peerd %s\n", version)
	return nil
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: peerd <command> [args]\n\nCommands:\n")
	for _, cmd := range commands() {
		if cmd.synopsis == "" {
			continue // hidden
		}
		fmt.Fprintf(w, "  %-12s %s\n", cmd.name, cmd.synopsis)
	}
	fmt.Fprintf(w, "\nRun 'peerd <command> -h' for the flags of a command.\n")
}

// dispatch runs the subcommand named by args[0] and returns its error.
func dispatch(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		usage(c.stderr)
		return usageErrorf("no command given")
	}
	name := args[0]
	switch name {
	case "-h", "-help", "--help", "help":
		usage(c.stdout)
		return nil
	}
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd.run(ctx, c, args[1:])
		}
	}
	usage(c.stderr)
	return usageErrorf("unknown command %q", name)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	c := &cli{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	err := dispatch(ctx, c, os.Args[1:])
	stop()
	os.Exit(exitCode(c.stderr, err))
}

// exitCode prints err on one line and maps it to the process exit status.
func exitCode(stderr io.Writer, err error) int {
	var es exitStatus
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	case errors.As(err, &es):
		return int(es) // the command printed its answer already
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "peerd: %s\n", oneLine(err.Error()))
		return 2
	default:
		fmt.Fprintf(stderr, "peerd: %s\n", oneLine(err.Error()))
		return 1
	}
}

// exitStatus is an answer given by the exit status alone (consul's
// `intention check` exits 2 when denied): nothing more is printed.
type exitStatus int

func (e exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// errHelp is returned when the user asked for help with -h; it is not a failure.
var errHelp = errors.New("help requested")

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
