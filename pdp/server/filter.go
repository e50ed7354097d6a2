package server

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// ParseTime reads a point in time as a duration before now ("15m", "24h")
// or an RFC 3339 time, as log queries take it.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q: want a positive duration", s)
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: want a duration such as 15m or an RFC 3339 time", s)
	}
	return t, nil
}

// FilterFromQuery reads a log filter from URL query parameters, the same
// names as the CLI's flags: principal, action, resource, decision,
// session_id, task_id, trace_id, since, until, limit, before_seq.
func FilterFromQuery(q url.Values, now time.Time) (decisionlog.Filter, error) {
	f := decisionlog.Filter{
		Kinds:     []decisionlog.Kind{decisionlog.KindDecision},
		Principal: q.Get("principal"),
		Action:    q.Get("action"),
		Resource:  q.Get("resource"),
		Decision:  q.Get("decision"),
		SessionID: q.Get("session_id"),
		TaskID:    q.Get("task_id"),
		TraceID:   q.Get("trace_id"),
	}
	known := map[string]bool{"principal": true, "action": true, "resource": true, "decision": true,
		"session_id": true, "task_id": true, "trace_id": true, "since": true, "until": true, "limit": true, "before_seq": true}
	for k := range q {
		if !known[k] {
			return f, wire.BadRequest(k, errors.New("unknown query parameter"))
		}
	}
	if f.Decision != "" && !wire.Verdict(f.Decision).Valid() {
		return f, wire.BadRequest("decision", fmt.Errorf("%q: want allow, deny or step_up", f.Decision))
	}
	var err error
	for _, tp := range []struct {
		name string
		dst  *time.Time
	}{{"since", &f.Since}, {"until", &f.Until}} {
		if v := q.Get(tp.name); v != "" {
			if *tp.dst, err = ParseTime(v, now); err != nil {
				return f, wire.BadRequest(tp.name, err)
			}
		}
	}
	for _, ip := range []struct {
		name string
		set  func(int64)
	}{{"limit", func(n int64) { f.Limit = int(n) }}, {"before_seq", func(n int64) { f.BeforeSeq = n }}} {
		if v := strings.TrimSpace(q.Get(ip.name)); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return f, wire.BadRequest(ip.name, fmt.Errorf("%q: want a positive integer", v))
			}
			ip.set(n)
		}
	}
	if f.Limit > 10000 {
		return f, wire.BadRequest("limit", errors.New("at most 10000"))
	}
	return f, nil
}
