package main

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"

	"github.com/agentpdp/agentpdp/internal/plural"
	"github.com/agentpdp/agentpdp/pdp/client"
)

// maxErrorKinds bounds the kinds of error bench prints.
const maxErrorKinds = 10

// errorTally is one kind of error: how many, and the first as it was.
type errorTally struct {
	count   int
	example string
}

// errorTallies counts one client's errors by kind.
type errorTallies map[string]*errorTally

func (t errorTallies) add(err error) {
	msg, kind := errorKind(err)
	if e, ok := t[kind]; ok {
		e.count++
		return
	}
	t[kind] = &errorTally{count: 1, example: msg}
}

var (
	quotedValue = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	numberValue = regexp.MustCompile(`\b\d+(?:\.\d+)*\b`)
)

// errorKind is err as bench shows it (msg) and the kind it is counted
// under: for an answer of the daemon, its HTTP status and reason phrase
// and the message; the message with every quoted value replaced by "…"
// and every number by N, so that refusals naming different agents,
// entities or offsets are one kind ("400 Bad Request: entities[N]:
// Agent::"…" is the principal; …").
func errorKind(err error) (msg, kind string) {
	text, head := err.Error(), ""
	var answered *client.Error
	if errors.As(err, &answered) {
		head = fmt.Sprintf("%d %s: ", answered.Status, http.StatusText(answered.Status))
		text = answered.Message
	}
	general := numberValue.ReplaceAllString(quotedValue.ReplaceAllString(text, `"…"`), "N")
	return head + text, head + general
}

// errorSummary renders a result's errors, one kind per line with its count
// and an example, the most frequent first, at most maxErrorKinds kinds and
// then "and N more kinds". When the daemon refused the requests' inline
// entities (a 400 under request_entities unknown_only or refuse), one hint
// line says how to bench it. Empty for no errors.
func errorSummary(r *benchResult) string {
	kinds := slices.Collect(maps.Keys(r.Errors))
	slices.SortFunc(kinds, func(a, b string) int {
		if c := cmp.Compare(r.Errors[b], r.Errors[a]); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	var b strings.Builder
	entities := false
	for i, kind := range kinds {
		example := r.ErrorExamples[kind]
		if i < maxErrorKinds {
			fmt.Fprintf(&b, "error ×%d: %s\n", r.Errors[kind], kind)
			if example != "" && example != kind {
				fmt.Fprintf(&b, "  e.g. %s\n", example)
			}
		}
		entities = entities || refusedEntities(example)
	}
	if len(kinds) > maxErrorKinds {
		fmt.Fprintf(&b, "and %s\n", plural.Count(len(kinds)-maxErrorKinds, "more kind", "more kinds"))
	}
	if entities {
		b.WriteString("hint: the daemon refuses entities described in requests; serve with --config examples/bench.yaml (request_entities: trusted), or give --requests FILE with requests that describe no trusted entities\n")
	}
	return b.String()
}

// refusedEntities reports whether msg is the daemon's 400 for a request's
// inline entities (pdp/trust.go): one the request_entities setting refuses,
// the principal described by a caller that may not, or an entity a trusted
// source already knows.
func refusedEntities(msg string) bool {
	if !strings.HasPrefix(msg, "400 ") || !strings.Contains(msg, "entities[") {
		return false
	}
	return strings.Contains(msg, "request_entities") || strings.Contains(msg, "is the principal") || strings.Contains(msg, "known to a trusted source")
}
