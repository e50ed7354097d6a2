package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// TestReviewer follows a reviewer: one decision id, and the CLI alone shows
// who asked, for whom, under which credential, why, who approved, what
// happened and the calls around it, then proves the log unaltered.
func TestReviewer(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	agent, admin := client.New(d.sock()), client.New(d.asock())
	ctx := t.Context()
	ref := func(typ, id string) wire.EntityRef { return wire.EntityRef{Type: typ, ID: id} }
	expires := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	root, err := agent.Authorize(ctx, &wire.Request{
		Principal: ref("Agent", "deploy-bot"), Action: ref("Action", "invoke_tool"), Resource: ref("Tool", "web.search"),
		SessionID: "s-9", TaskID: "t-1", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", OnBehalfOf: "bob@example.com",
		Prompt:     "roll out web v2",
		Credential: &wire.Credential{ID: "jti-77", Issuer: "https://idp.example.com", Subject: "deploy-bot", Scopes: []string{"deploy:write"}, ExpiresAt: &expires},
	})
	if err != nil {
		t.Fatal(err)
	}
	write := &wire.Request{Principal: ref("Agent", "deploy-bot"), Action: ref("Action", "invoke_tool"), Resource: ref("Tool", "k8s.apply"),
		Context: json.RawMessage(`{"args":{"manifest":"web-v2.yaml"}}`), ParentDecisionID: root.DecisionID, ToolCallID: "call_2"}
	stepUp, err := agent.Authorize(ctx, write)
	if err != nil || stepUp.Decision != wire.StepUp {
		t.Fatalf("step_up: %v %v", stepUp, err)
	}
	if err := admin.Do(ctx, http.MethodPost, "/v1/decisions/"+stepUp.DecisionID+"/approval",
		map[string]any{"approver": "carol@example.com", "approved": true, "comment": "CHG-1234"}, nil); err != nil {
		t.Fatal(err)
	}
	write.Approval = stepUp.DecisionID
	retry, err := agent.Authorize(ctx, write)
	if err != nil || retry.Decision != wire.Allow {
		t.Fatalf("approved retry: %v %v", retry, err)
	}
	if err := agent.Do(ctx, http.MethodPost, "/v1/decisions/"+retry.DecisionID+"/outcome", map[string]any{"status": "success", "detail": map[string]int{"pods": 3}}, nil); err != nil {
		t.Fatal(err)
	}
	denied, err := agent.Authorize(ctx, &wire.Request{Principal: ref("Agent", "deploy-bot"), Action: ref("Action", "invoke_tool"),
		Resource: ref("Tool", "invoices.export"), ParentDecisionID: root.DecisionID})
	if err != nil || denied.Decision != wire.Deny {
		t.Fatal(denied, err)
	}

	t.Run("Show", func(t *testing.T) {
		code, out, stderr := runCLI(t, "log", "show", "--db", d.db(), root.DecisionID)
		if code != 0 {
			t.Fatal(stderr)
		}
		exe, _ := os.Executable()
		for _, want := range []string{"ALLOW", `Agent::"deploy-bot"`, "bob@example.com", "s-9", "t-1", "4bf92f3577b34da6a3ce929d0e0e4736",
			"jti-77, issued by https://idp.example.com to deploy-bot, scopes deploy:write", "hmac-sha256:", "uid " + itoa(os.Getuid()), exe,
			"classification  public", `@id("agents-may-invoke-tools")`, "none reported"} {
			if !strings.Contains(out, want) {
				t.Errorf("log show lacks %q:\n%s", want, out)
			}
		}
		if strings.Contains(out, "roll out web v2") {
			t.Error("the prompt is shown in the clear")
		}
		code, out, _ = runCLI(t, "log", "show", "--db", d.db(), "--json", retry.DecisionID)
		var x struct {
			Decision struct {
				Decision string `json:"decision"`
			} `json:"decision"`
			Outcomes     []map[string]any `json:"outcomes"`
			ApprovalUsed map[string]any   `json:"approval_used"`
			Policies     []struct{ ID, Text string }
		}
		if code != 0 || json.Unmarshal([]byte(out), &x) != nil {
			t.Fatalf("--json: %d %s", code, out)
		}
		if x.Decision.Decision != "allow" || len(x.Outcomes) != 1 || x.Outcomes[0]["status"] != "success" ||
			x.ApprovalUsed["approver"] != "carol@example.com" || len(x.Policies) != 1 || !strings.Contains(x.Policies[0].Text, "production") {
			t.Errorf("show --json: %s", out)
		}
		if code, _, _ := runCLI(t, "log", "show", "--db", d.db(), "01a21ace-0000-7000-8000-000000000000"); code != exitFail {
			t.Errorf("unknown id: exit %d", code)
		}
	})
	t.Run("Chain", func(t *testing.T) {
		code, out, _ := runCLI(t, "log", "chain", "--db", d.db(), "--json", stepUp.DecisionID)
		type node struct {
			Decision struct {
				DecisionID string `json:"decision_id"`
			}
			Outcomes  []any
			Approvals []any
			Children  []node
		}
		var n node
		if code != 0 || json.Unmarshal([]byte(out), &n) != nil {
			t.Fatalf("chain: %d %s", code, out)
		}
		// root → (step_up → approval, retry → outcome), denied
		if n.Decision.DecisionID != root.DecisionID || len(n.Children) != 2 ||
			n.Children[0].Decision.DecisionID != stepUp.DecisionID || len(n.Children[0].Approvals) != 1 ||
			len(n.Children[0].Children) != 1 || n.Children[0].Children[0].Decision.DecisionID != retry.DecisionID ||
			len(n.Children[0].Children[0].Outcomes) != 1 || n.Children[1].Decision.DecisionID != denied.DecisionID {
			t.Errorf("chain tree: %s", out)
		}
		_, out, _ = runCLI(t, "log", "chain", "--db", d.db(), denied.DecisionID)
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 6 || !strings.Contains(lines[5], "* ") {
			t.Errorf("chain text, focus marked:\n%s", out)
		}
	})
	t.Run("TailExportStats", func(t *testing.T) {
		_, out, _ := runCLI(t, "log", "tail", "--db", d.db(), "-n", "3")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.Contains(lines[2], denied.DecisionID) {
			t.Errorf("tail:\n%s", out)
		}
		_, out, _ = runCLI(t, "log", "export", "--db", d.db(), "--format", "csv")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1+7 || !strings.HasPrefix(lines[0], "seq,time,kind") {
			t.Errorf("csv: %d lines\n%s", len(lines), out)
		}
		_, out, _ = runCLI(t, "log", "export", "--db", d.db(), "--kind", "decision")
		if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 4 {
			t.Errorf("jsonl decisions: %d", n)
		}
		_, out, _ = runCLI(t, "log", "stats", "--db", d.db(), "--json")
		var s struct {
			Decisions  int64
			ByDecision map[string]int64 `json:"by_decision"`
			Approvals  int64
			Log        struct {
				Rows       int64 `json:"rows"`
				LastSeq    int64 `json:"last_seq"`
				IndexedSeq int64 `json:"indexed_seq"`
			} `json:"log"`
		}
		if json.Unmarshal([]byte(out), &s) != nil || s.Decisions != 4 || s.ByDecision["step_up"] != 1 || s.Approvals != 1 {
			t.Errorf("stats: %s", out)
		}
		if s.Log.Rows < s.Decisions || s.Log.LastSeq < s.Log.Rows || s.Log.IndexedSeq > s.Log.LastSeq {
			t.Errorf("stats of the log itself: %+v", s.Log)
		}
		_, out, _ = runCLI(t, "log", "query", "--db", d.db(), "--credential", "jti-77", "--on-behalf-of", "bob@example.com", "--peer-uid", itoa(os.Getuid()), "--json")
		if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 1 || !strings.Contains(out, root.DecisionID) {
			t.Errorf("query by provenance: %s", out)
		}
	})

	// A clean stop signs the tail; then the log verifies, and tampering shows.
	d.cmd.Process.Signal(syscall.SIGTERM)
	<-d.done
	pub := filepath.Join(d.dir, "var", "signing.key.pub")
	code, out, stderr := runCLI(t, "log", "verify", "--db", d.db(), "--pubkey", pub)
	if code != 0 || !strings.Contains(out, "every signature verified") {
		t.Fatalf("verify: %d %s %s", code, out, stderr)
	}
	_, cp, _ := runCLI(t, "log", "export", "--db", d.db(), "--kind", "checkpoint")
	trusted := filepath.Join(d.dir, "trusted.json")
	if err := os.WriteFile(trusted, []byte(strings.Split(strings.TrimSpace(cp), "\n")[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCLI(t, "log", "verify", "--db", d.db(), "--pubkey", pub, "--trusted-checkpoint", trusted); code != 0 || !strings.Contains(out, "trusted checkpoint") {
		t.Errorf("verify with the trusted checkpoint: %d %s", code, out)
	}
	db, err := sql.Open("sqlite3", "file:"+d.db())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{`DROP TRIGGER log_no_delete`, `DELETE FROM log WHERE seq >= 7`} {
		if _, err := db.Exec(s); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	code, _, stderr = runCLI(t, "log", "verify", "--db", d.db(), "--pubkey", pub, "--trusted-checkpoint", trusted)
	if code != exitFail || !strings.Contains(stderr, "FAILED at seq 7") || !strings.Contains(stderr, "truncated") {
		t.Errorf("truncated log: exit %d %s", code, stderr)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestKeygen(t *testing.T) {
	out := filepath.Join(t.TempDir(), "keys", "signing.key")
	code, stdout, stderr := runCLI(t, "keygen", "--out", out)
	if code != 0 || !strings.Contains(stdout, "key id") {
		t.Fatalf("keygen: %d %s %s", code, stdout, stderr)
	}
	for f, mode := range map[string]os.FileMode{out: 0o600, out + ".pub": 0o644} {
		st, err := os.Stat(f)
		if err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: %v %v", f, st.Mode(), err)
		}
	}
	if code, _, stderr := runCLI(t, "keygen", "--out", out); code != exitFail || !strings.Contains(stderr, "exists") {
		t.Errorf("overwrite without --force: %d %s", code, stderr)
	}
	if code, _, _ := runCLI(t, "keygen", "--out", out, "--force"); code != 0 {
		t.Errorf("--force: %d", code)
	}
	if code, _, _ := runCLI(t, "keygen"); code != exitUsage {
		t.Errorf("no --out: %d", code)
	}
	code, stdout, _ = runCLI(t, "keygen", "--out", out, "--force", "--json")
	var k struct {
		KeyID string `json:"key_id"`
	}
	if code != 0 || json.Unmarshal([]byte(stdout), &k) != nil || len(k.KeyID) != 16 {
		t.Errorf("--json: %d %s", code, stdout)
	}
}

func TestLogTailFollows(t *testing.T) {
	d := newDaemonDir(t)
	d.start()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &lockedWriter{w: &strings.Builder{}}
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"log", "tail", "-f", "--db", d.db()}, strings.NewReader(""), out, io.Discard)
	}()
	dec, err := client.New(d.sock()).Authorize(t.Context(), &wire.Request{Principal: wire.EntityRef{Type: "Agent", ID: "billing-bot"},
		Action: wire.EntityRef{Type: "Action", ID: "invoke_tool"}, Resource: wire.EntityRef{Type: "Tool", ID: "sql.query"}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), dec.DecisionID) {
		if time.Now().After(deadline) {
			t.Fatalf("tail -f did not print the new decision:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("tail -f exit %d", code)
	}
}
