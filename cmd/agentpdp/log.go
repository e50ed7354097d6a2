package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/server"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// logCmd is agentpdp log: the parent of the commands that read the log.
type logCmd struct{ streams }

func newLogCmd() *cobra.Command {
	c := &logCmd{}
	cmd := &cobra.Command{
		Use:   "log",
		Short: "Read, verify and prune the decision log (read-only, except prune)",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	cmd.AddCommand(logCommands()...)
	return cmd
}

// logCommands are log's subcommands, each a type in its own log_*.go file.
func logCommands() []*cobra.Command {
	return []*cobra.Command{
		newLogQueryCmd(),
		newLogTailCmd(),
		newLogShowCmd(),
		newLogChainCmd(),
		newLogExportCmd(),
		newLogStatsCmd(),
		newLogVerifyCmd(),
		newLogPruneCmd(),
		newLogProveCmd(),
		newLogVerifyProofCmd(),
	}
}

func (c *logCmd) Run(context.Context) error {
	return usagef("log: missing subcommand (query, tail, show, chain, export, stats, verify, prune, prove, verify-proof)")
}

func dbFlag(fl *pflag.FlagSet, db *string) {
	fl.StringVar(db, "db", DefaultConfig().DB, "decision log `file`")
}

// logKinds are the kinds of row the log holds, for flags that take one.
var logKinds = decisionlog.Kinds

func kindList() string {
	names := make([]string, len(logKinds))
	for i, k := range logKinds {
		names[i] = string(k)
	}
	return strings.Join(names, ", ")
}

// oneArg takes exactly one positional argument, named in the usage error.
func oneArg(name string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return usagef("%swant one %s", commandPrefix(cmd), name)
		}
		return nil
	}
}

// describe is a row as one line for people: what it is and its gist.
func describe(e *decisionlog.Entry, loc *time.Location) string {
	at := showTime(e.Time, loc)
	head := fmt.Sprintf("%-6d %s  %-11s", e.Seq, at, e.Kind)
	switch e.Kind {
	case decisionlog.KindDecision:
		var r wire.DecisionRecord
		if json.Unmarshal(e.Body, &r) == nil {
			return fmt.Sprintf("%s %-7s %s %s %s [%s] %s", head, r.Decision, r.Principal, r.Action, r.Resource, reasonList(r.Reasons), r.DecisionID)
		}
	case decisionlog.KindOutcome:
		var r wire.OutcomeRecord
		if json.Unmarshal(e.Body, &r) == nil {
			flag := ""
			if r.ActedAgainst {
				flag = "  ACTED AGAINST A " + strings.ToUpper(string(r.Decision))
			}
			return fmt.Sprintf("%s %-7s for %s%s", head, r.Status, r.DecisionID, flag)
		}
	case decisionlog.KindApproval:
		var r wire.ApprovalRecord
		if json.Unmarshal(e.Body, &r) == nil {
			verb := "rejected"
			if r.Approved {
				verb = "approved"
			}
			return fmt.Sprintf("%s %s by %s for %s, until %s", head, verb, r.Approver, r.DecisionID, showTime(r.ExpiresAt, loc))
		}
	case decisionlog.KindPolicyLoad:
		var r pdp.PolicyLoadRecord
		if json.Unmarshal(e.Body, &r) == nil {
			return fmt.Sprintf("%s %s: %s in %s (%s)", head, r.PolicyVersion, plural.Count(len(r.Policies), "policy", "policies"), plural.Count(len(r.Files), "file", "files"), r.Trigger)
		}
	case decisionlog.KindPrune:
		var p decisionlog.PruneRecord
		if json.Unmarshal(e.Body, &p) == nil {
			return fmt.Sprintf("%s deletes rows before seq %d (keeping %s): %s", head, p.Anchor, plural.Count(len(p.Kept), "policy load", "policy loads"), p.Rule)
		}
	case decisionlog.KindIntegrity:
		var r decisionlog.IntegrityRecord
		if json.Unmarshal(e.Body, &r) == nil {
			return fmt.Sprintf("%s %s %s%s", head, r.Event, strings.Join(r.Triggers, ","), r.Problem)
		}
	case decisionlog.KindCheckpoint:
		var c decisionlog.Checkpoint
		if json.Unmarshal(e.Body, &c) == nil {
			return fmt.Sprintf("%s signs seq %d, key %s", head, c.Seq, c.KeyID)
		}
	}
	return head
}

func reasonList(rs []wire.Reason) string {
	return strings.Join(reasonIDs(rs), ",")
}

// printEntries writes entries as JSON lines or as described lines.
func printEntries(w io.Writer, entries []*decisionlog.Entry, asJSON bool, loc *time.Location) error {
	enc := json.NewEncoder(w)
	for _, e := range entries {
		if asJSON {
			if err := enc.Encode(e); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintln(w, describe(e, loc))
	}
	return nil
}

// timeLayout is how commands show times: RFC 3339 with milliseconds and
// the zone's offset, unambiguous across a DST change and accepted back by
// --since and --until as written.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// showTime formats t in loc (UTC unless --local).
func showTime(t time.Time, loc *time.Location) string {
	return t.In(loc).Format(timeLayout)
}

// localFlag registers --local: times in the machine's zone instead of UTC.
func localFlag(fl *pflag.FlagSet, local *bool) {
	fl.BoolVar(local, "local", false, "show times in this machine's time zone (with its offset) instead of UTC")
}

// zone is the location times are shown in.
func zone(local bool) *time.Location {
	if local {
		return time.Local
	}
	return time.UTC
}

// timeRange reads --since and --until: durations ago or RFC 3339 times;
// empty means unbounded.
func timeRange(command, since, until string) (lo, hi time.Time, err error) {
	now := time.Now()
	if since != "" {
		if lo, err = server.ParseTime(since, now); err != nil {
			return lo, hi, usagef("%s: --since %v", command, err)
		}
	}
	if until != "" {
		if hi, err = server.ParseTime(until, now); err != nil {
			return lo, hi, usagef("%s: --until %v", command, err)
		}
	}
	return lo, hi, nil
}

// readFlagFile reads the file a flag names. A file that is not there is a
// usage error (exit 2), not a failed check: the command line is wrong.
func readFlagFile(command, flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usagef("%s: --%s %s: no such file", command, flag, path)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: --%s: %w", command, flag, err)
	}
	return b, nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// openLog opens the log at db read-only. A file that is not there is a
// usage error that says where the log normally is: SQLite would otherwise
// answer "unable to open database file".
func openLog(command, db string) (*decisionlog.Reader, error) {
	if _, err := os.Stat(db); errors.Is(err, fs.ErrNotExist) {
		return nil, usagef("%s: --db %s: no such file; give the decision log serve writes (the config's db, default %s)", command, db, DefaultConfig().DB)
	}
	return decisionlog.OpenReader(db)
}

// needDir checks that the directory a flag names is there, before a command
// loads from it.
func needDir(command, flag, path string) error {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usagef("%s: --%s %s: no such directory; give --%s DIR", command, flag, path, flag)
	case err != nil:
		return fmt.Errorf("%s: --%s: %w", command, flag, err)
	case !st.IsDir():
		return usagef("%s: --%s %s: not a directory", command, flag, path)
	}
	return nil
}
