package fleet_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/decisionlog/fleet"
	"github.com/agentpdp/agentpdp/internal/pgtest"
)

// decisionBody is a decision row of the size the daemon writes (about
// 1.1 KB: the request with its context, the caller, reasons).
func decisionBody(origin string, i int) string {
	return fmt.Sprintf(`{"decision_id":"%s-%08d","principal":"Agent::\"billing-bot-%d\"","action":"Action::\"call_tool\"","resource":"Tool::\"payments.refund\"","decision":"%s","reasons":[{"policy":"policies/payments.cedar:12","effect":"permit","annotations":{"id":"refunds-under-limit","reason":"refund below the agent's limit"}}],"policy_version":"sha256:3f5e0c1b9a7d4e2f8c6b5a49382716f5e4d3c2b1a09f8e7d6c5b4a3928171605","request":{"principal":{"type":"Agent","id":"billing-bot-%d"},"action":{"type":"Action","id":"call_tool"},"resource":{"type":"Tool","id":"payments.refund"},"context":{"args":{"amount":%d,"currency":"EUR","customer_id":"cus_%06d","reason":"duplicate charge reported by the customer through support ticket"},"classification":"confidential","tool":{"server":"payments","name":"refund"}},"session_id":"sess-%06d","task_id":"task-%05d","trace_id":"4bf92f3577b34da6a3ce929d0e0e%04x","tool_call_id":"call_%08d","on_behalf_of":"alice@example.com"},"peer":{"pid":%d,"uid":1000,"gid":1000,"exe":"/usr/bin/python3.12"},"eval_us":41}`,
		origin[:8], i, i%50, []string{"allow", "allow", "deny", "step_up"}[i%4], i%50, i%900, i%100000, i/20, i/100, i%65536, i, 4000+i%100)
}

// measureHosts writes n decisions in each of hosts logs, a checkpoint
// every 1,000 rows as the daemon's default.
func measureHosts(t *testing.T, hosts, n int) []*hostLog {
	var out []*hostLog
	for range hosts {
		priv, pub := newKey(t)
		h := &hostLog{path: filepath.Join(t.TempDir(), "d.db"), priv: priv, pub: pub}
		l, err := decisionlog.Open(context.Background(), h.path, decisionlog.Options{SigningKey: priv, Durability: decisionlog.DurabilityNormal})
		if err != nil {
			t.Fatal(err)
		}
		h.origin = l.Origin()
		for i := 0; i < n; i += 100 {
			var es []*decisionlog.Entry
			for j := i; j < min(i+100, n); j++ {
				es = append(es, &decisionlog.Entry{Kind: decisionlog.KindDecision, Time: time.Now(), Body: []byte(decisionBody(h.origin, j))})
			}
			if err := l.Append(context.Background(), es...); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
	return out
}

// TestFleet_Measure measures ingest into one and into two collectors (rows
// per second, batches of 500, one shipper per host, all at once), bytes
// per row in PostgreSQL, and fleet verify's rows per second. It runs under
// make bench-fleet (AGENTPDP_FLEET_MEASURE=1) and prints the figures.
func TestFleet_Measure(t *testing.T) {
	if os.Getenv("AGENTPDP_FLEET_MEASURE") != "1" {
		t.Skip("measurements run under make bench-fleet (AGENTPDP_FLEET_MEASURE=1)")
	}
	const hosts, perHost, batch = 4, 10000, 500
	hs := measureHosts(t, hosts, perHost)
	rows := make([][][]byte, hosts)
	total := 0
	for i, h := range hs {
		rows[i] = h.rows(t)
		total += len(rows[i])
	}
	for _, collectors := range []int{1, 2} {
		// A fresh server each time, with PostgreSQL's durable defaults.
		pg := pgtest.Start(t)
		var cs []*testCollector
		for range collectors {
			cs = append(cs, startCollector(t, pg.DSN, time.Hour, hs...))
		}
		start := time.Now()
		var wg sync.WaitGroup
		for i := range hs {
			wg.Go(func() {
				for j, k := 0, 0; j < len(rows[i]); j, k = j+batch, k+1 {
					tc := cs[(i+k)%len(cs)] // batches of one host alternate between collectors
					if code, _, body := tc.post(t, fmt.Sprintf("%s-%d", tc.token, i), rows[i][j:min(j+batch, len(rows[i]))]); code != http.StatusOK {
						t.Errorf("%d %s", code, body)
						return
					}
				}
			})
		}
		wg.Wait()
		took := time.Since(start)
		st, err := fleet.FleetStats(context.Background(), cs[0].Store(), time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("ingest, %d collector(s): %d rows from %d hosts in %.2fs: %.0f rows/s; %d bytes in PostgreSQL, %.0f bytes/row",
			collectors, total, hosts, took.Seconds(), float64(total)/took.Seconds(), st.Bytes, float64(st.Bytes)/float64(total))
		rep, err := fleet.VerifyAll(context.Background(), cs[0].Store(), nil)
		if err != nil || !rep.OK() {
			t.Fatalf("fleet verify: %v %+v", err, rep)
		}
		t.Logf("fleet verify: %d rows in %.2fs: %.0f rows/s", rep.Rows, rep.Seconds, float64(rep.Rows)/rep.Seconds)
	}
}
