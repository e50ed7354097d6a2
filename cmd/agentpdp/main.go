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
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes: 1 when what a command checks fails or it cannot run, 2 for a
// usage error: a bad command line, or a configuration file that cannot be
// read or holds a wrong key or value (configError).
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
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var ue usageError
	var ce configError
	var ee exitError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "agentpdp: %v\nRun '%s --help' for usage.\n", err, cmd.CommandPath())
		return exitUsage
	case errors.As(err, &ce):
		// The message names the file and the key; the flags are not at fault.
		fmt.Fprintf(stderr, "agentpdp: %v\n", err)
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

// rootCmd is agentpdp itself: --version, or a command.
type rootCmd struct {
	streams
	version bool
}

func newRootCmd() *cobra.Command {
	c := &rootCmd{}
	root := &cobra.Command{
		Use:           "agentpdp",
		Short:         "Policy decision point for AI agents, with a durable, verifiable decision log",
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          noArgs,
		RunE:          runE(c, nil),
	}
	root.Flags().BoolVar(&c.version, "version", false, "print the version, as agentpdp version does, and exit")
	root.CompletionOptions.DisableDefaultCmd = true
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(commands()...)
	return root
}

func (c *rootCmd) Run(context.Context) error {
	if c.version {
		readVersion().print(c.stdout)
		return nil
	}
	return usagef("missing command: give one of %s", strings.Join(commandNames(commands()), ", "))
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
		newSinksCmd(),
		newCollectorCmd(),
		newFleetCmd(),
		newConsoleCmd(),
		newVersionCmd(),
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

// noArgs refuses positional arguments as a usage error. On a command with
// subcommands, an argument is a mistyped subcommand: it suggests the
// closest.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if cmd.HasAvailableSubCommands() {
		names := commandNames(cmd.Commands())
		msg := fmt.Sprintf("unknown command %q", args[0])
		if s := suggest(args[0], names); s != "" {
			msg += fmt.Sprintf("; did you mean %q?", s)
		} else {
			msg += "; the commands are " + strings.Join(names, ", ")
		}
		return usagef("%s%s", commandPrefix(cmd), msg)
	}
	return usagef("%sunexpected argument %q", commandPrefix(cmd), args[0])
}

// commandNames are the names of the commands people can run, in order.
func commandNames(cmds []*cobra.Command) []string {
	var names []string
	for _, c := range cmds {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return names
}

// commandPrefix is "log query: " for agentpdp log query, and "" for the
// root: run already prefixes every message with "agentpdp: ".
func commandPrefix(cmd *cobra.Command) string {
	if !cmd.HasParent() {
		return ""
	}
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ") + ": "
}

// flagError turns pflag's parse errors into usage errors in the command's
// terms: an unknown flag with the closest one it has, and a bad value with
// what the flag wants rather than strconv's wording.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	prefix := commandPrefix(cmd)
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		var names []string
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden {
				names = append(names, f.Name)
			}
		})
		msg = fmt.Sprintf("unknown flag --%s", name)
		if s := suggest(name, names); s != "" {
			msg += fmt.Sprintf("; did you mean --%s?", s)
		}
		return usagef("%s%s", prefix, msg)
	}
	// pflag: invalid argument "many" for "--limit" flag: strconv.ParseInt: …
	if rest, ok := strings.CutPrefix(msg, "invalid argument "); ok {
		value, rest, _ := strings.Cut(rest, " for ")
		flag, _, _ := strings.Cut(strings.TrimPrefix(rest, `"`), `"`) // "--limit" or "-d, --duration"
		if i := strings.LastIndex(flag, " "); i >= 0 {
			flag = flag[i+1:]
		}
		if f := cmd.Flags().Lookup(strings.TrimLeft(flag, "-")); f != nil {
			if want := flagWants(f.Value.Type()); want != "" {
				return usagef("%s--%s: want %s, got %s", prefix, f.Name, want, value)
			}
		}
	}
	return usagef("%s%s", prefix, msg)
}

// flagWants says in words what a pflag value type accepts.
func flagWants(typ string) string {
	switch typ {
	case "int", "int64", "int32", "uint", "uint64", "uint32":
		return "a whole number"
	case "duration":
		return "a duration such as 15m, 2s or 100ms"
	case "bool":
		return "true or false"
	case "float64", "float32":
		return "a number"
	}
	return ""
}
