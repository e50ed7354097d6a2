package main

import (
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

var csvHeader = []string{"seq", "time", "kind", "decision_id", "decision", "principal", "action", "resource", "classification",
	"reasons", "policy_version", "session_id", "task_id", "trace_id", "parent_decision_id", "tool_call_id", "on_behalf_of",
	"credential_id", "peer_pid", "peer_uid", "peer_exe", "status", "approver", "hash"}

// logExportCmd is agentpdp log export: rows streamed as JSON lines or CSV.
type logExportCmd struct {
	streams
	db, format, since, until string
	kinds                    []string
}

func newLogExportCmd() *cobra.Command {
	c := &logExportCmd{}
	cmd := &cobra.Command{
		Use:   "export [--format jsonl|csv] [--since …] [--until …] [--kind K]",
		Short: "Stream rows in seq order, as JSON lines (every field) or CSV (the common ones)",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	fl := cmd.Flags()
	dbFlag(fl, &c.db)
	fl.StringVar(&c.format, "format", "jsonl", "jsonl or csv")
	fl.StringVar(&c.since, "since", "", "only rows after this: a duration ago (24h) or an RFC 3339 time")
	fl.StringVar(&c.until, "until", "", "only rows before this, as --since")
	fl.StringSliceVar(&c.kinds, "kind", nil, "only these kinds: decision, outcome, approval, policy_load, checkpoint")
	return cmd
}

func (c *logExportCmd) Run(ctx context.Context) error {
	if c.format != "jsonl" && c.format != "csv" {
		return usagef("log export: --format %q: want jsonl or csv", c.format)
	}
	lo, hi, err := timeRange("log export", c.since, c.until)
	if err != nil {
		return err
	}
	want := map[decisionlog.Kind]bool{}
	for _, k := range c.kinds {
		if !slices.Contains(logKinds, decisionlog.Kind(k)) {
			return usagef("log export: --kind %q: want one of %s", k, kindList())
		}
		want[decisionlog.Kind(k)] = true
	}
	r, err := openLog("log export", c.db)
	if err != nil {
		return err
	}
	defer r.Close()
	out := c.stdout
	enc := json.NewEncoder(out)
	cw := csv.NewWriter(out)
	if c.format == "csv" {
		cw.Write(csvHeader)
	}
	err = r.Scan(ctx, 1, func(e *decisionlog.Entry) error {
		if (!lo.IsZero() && e.Time.Before(lo)) || (!hi.IsZero() && !e.Time.Before(hi)) || (len(want) > 0 && !want[e.Kind]) {
			return nil
		}
		if c.format == "jsonl" {
			return enc.Encode(e)
		}
		return cw.Write(csvRow(e))
	})
	cw.Flush()
	if err == nil {
		err = cw.Error()
	}
	return err
}

func csvRow(e *decisionlog.Entry) []string {
	var b struct {
		wire.DecisionRecord
		Status   string `json:"status"`
		Approver string `json:"approver"`
	}
	json.Unmarshal(e.Body, &b) // fields absent from a kind stay empty
	row := map[string]string{
		"seq": strconv.FormatInt(e.Seq, 10), "time": e.Time.UTC().Format(time.RFC3339Nano), "kind": string(e.Kind),
		"decision_id": b.DecisionID, "decision": string(b.Decision), "principal": b.Principal, "action": b.Action, "resource": b.Resource,
		"classification": b.Classification, "reasons": reasonList(b.Reasons), "policy_version": b.PolicyVersion,
		"status": b.Status, "approver": b.Approver, "hash": hex.EncodeToString(e.Hash),
	}
	if q := b.Request; q != nil {
		row["session_id"], row["task_id"], row["trace_id"] = q.SessionID, q.TaskID, q.TraceID
		row["parent_decision_id"], row["tool_call_id"], row["on_behalf_of"] = q.ParentDecisionID, q.ToolCallID, q.OnBehalfOf
		if q.Credential != nil {
			row["credential_id"] = q.Credential.ID
		}
	}
	if p := b.Peer; p != nil {
		row["peer_pid"], row["peer_uid"], row["peer_exe"] = fmt.Sprint(p.PID), fmt.Sprint(p.UID), p.Exe
	}
	out := make([]string, len(csvHeader))
	for i, h := range csvHeader {
		out[i] = csvCell(row[h])
	}
	return out
}

// csvCell defuses a cell a spreadsheet would run as a formula (CSV
// injection): one that begins with =, +, -, @, a tab or a carriage return
// gets a leading single quote, as OWASP advises. Agents choose most of
// these values (session ids, tool call ids, resource ids), and a reviewer
// opens the export in a spreadsheet. The quote shows; nothing is lost.
func csvCell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}
