// Command agentpdp is the policy decision point for AI agents: it serves
// Cedar decisions over Unix sockets and records each one, durably and
// tamper-evidently, before answering. See DESIGN.md for the contract.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes: 1 when what a command checks fails or it cannot run, 2 for a
// usage error.
const (
	exitFail  = 1
	exitUsage = 2
)

// usageError is a bad command line: printed with a hint, exit 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// exitError carries an exit code for a failure that was already reported,
// such as policies that do not validate.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }

// errSilent is an exitError with nothing more to print.
var errSilent = errors.New("")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	var ue usageError
	var ee exitError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "agentpdp: %v\nRun 'agentpdp --help' for usage.\n", err)
		return exitUsage
	case errors.As(err, &ee):
		if !errors.Is(ee.err, errSilent) {
			fmt.Fprintf(stderr, "agentpdp: %v\n", ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(stderr, "agentpdp: %v\n", err)
	return exitFail
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "agentpdp",
		Short:         "Policy decision point for AI agents, with a durable, verifiable decision log",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("missing command")
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(commands()...)
	return root
}

// commands are the root's commands, in the order help lists them. Each is a
// type in its own file (serve.go holds serveCmd) whose new…Cmd binds its
// flags to its fields; adding a command is adding its line here.
func commands() []*cobra.Command {
	return []*cobra.Command{
		newServeCmd(),
		newCheckCmd(),
		newValidateCmd(),
		newTestCmd(),
		newReplayCmd(),
		newLogCmd(),
		newKeygenCmd(),
		newMCPProxyCmd(),
		newBenchCmd(),
		newShipCmd(),
		newCollectorCmd(),
		newFleetCmd(),
		newConsoleCmd(),
	}
}

// streams are a command's standard input, output and error. runE sets them
// from cobra before Run, so that tests capture what a command prints.
type streams struct {
	stdin          io.Reader
	stdout, stderr io.Writer
}

func (s *streams) setStreams(cmd *cobra.Command) {
	s.stdin, s.stdout, s.stderr = cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr()
}

// runner is one agentpdp command: a type whose fields its flags set, with
// a Run that does the command's work. It embeds streams.
type runner interface {
	Run(ctx context.Context) error
	setStreams(cmd *cobra.Command)
}

// runE adapts a command type to cobra: it sets the command's streams and,
// if args is not nil, stores its positional arguments there, then runs it.
func runE(c runner, args *[]string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, a []string) error {
		c.setStreams(cmd)
		if args != nil {
			*args = a
		}
		return c.Run(cmd.Context())
	}
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s: unexpected argument %q", cmd.CommandPath(), args[0])
	}
	return nil
}
