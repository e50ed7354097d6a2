package wire

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// randomRecord builds a decision record from seed, with s among its
// strings: every field set or not, nil or empty, and strings that need
// escaping.
func randomRecord(seed uint64, s string) (*DecisionRecord, *Decision) {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	strs := []string{"", "a", "Agent::\"x\"", "<script>&", "é\u2028\u2029", "tab\there", "\x01", "\xff\xfe", s, "sha256:" + s}
	str := func() string { return strs[r.IntN(len(strs))] }
	raws := []json.RawMessage{nil, json.RawMessage(`{}`), json.RawMessage(`{"a":[1,{"b":"c d"}],"e":"\u00e9"}`),
		json.RawMessage(`{"x": 1}`), json.RawMessage(`{"h":"<b>"}`), json.RawMessage(`{"s":"a\"b\\"}`)}
	rawv := func() json.RawMessage { return raws[r.IntN(len(raws))] }
	ref := func() EntityRef { return EntityRef{Type: str(), ID: str()} }
	var refs func() []EntityRef = func() []EntityRef {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return []EntityRef{}
		}
		return []EntityRef{ref(), ref()}
	}
	reasons := func() []Reason {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return []Reason{}
		}
		var out []Reason
		for range 1 + r.IntN(3) {
			rs := Reason{Policy: str(), Effect: str(), File: str(), Line: r.IntN(3), Builtin: r.IntN(2) == 0, Detail: str()}
			if r.IntN(2) == 0 {
				rs.Annotations = map[string]string{str(): str(), str(): str(), "z": str()}
			} else if r.IntN(2) == 0 {
				rs.Annotations = map[string]string{}
			}
			out = append(out, rs)
		}
		return out
	}
	errs := func() []EvalError {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return []EvalError{}
		}
		return []EvalError{{Policy: str(), Effect: str(), File: str(), Line: r.IntN(2), Message: str()}}
	}
	entities := func() []Entity {
		switch r.IntN(3) {
		case 0:
			return nil
		case 1:
			return []Entity{}
		}
		return []Entity{{UID: ref(), Attrs: rawv(), Parents: refs(), Tags: rawv()}, {UID: ref()}}
	}
	when := func() *time.Time {
		ts := []time.Time{time.Date(2026, 11, 27, 4, 5, 6, 789, time.UTC), time.Date(2030, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)), time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
		if r.IntN(2) == 0 {
			return nil
		}
		return &ts[r.IntN(len(ts))]
	}
	req := &Request{Principal: ref(), Action: ref(), Resource: ref(), Context: rawv(), Entities: entities(),
		SessionID: str(), TaskID: str(), TraceID: str(), ParentDecisionID: str(), ToolCallID: str(), OnBehalfOf: str(), Prompt: str(), Approval: str()}
	if r.IntN(2) == 0 {
		req.Credential = &Credential{ID: str(), Issuer: str(), Subject: str(), IssuedAt: when(), ExpiresAt: when()}
		if r.IntN(2) == 0 {
			req.Credential.Scopes = []string{str(), str()}
		}
	}
	rec := &DecisionRecord{DecisionID: str(), Decision: str(), Principal: str(), Action: str(), Resource: str(), Classification: str(),
		Reasons: reasons(), Errors: errs(), PolicyVersion: str(), OnError: OnError(str()), ContextDigest: str(), EvalNanos: r.Int64N(1 << 40)}
	if r.IntN(4) > 0 {
		rec.Request = req
	}
	if r.IntN(2) == 0 {
		rec.Approval = &ApprovalUse{ID: str(), Approver: str()}
	}
	if r.IntN(2) == 0 {
		rec.Masked = []string{str()}
	}
	rec.Provided = entities()
	rec.LogOnly = reasons()
	if r.IntN(2) == 0 {
		rec.Shadow = &ShadowResult{Decision: str(), Reasons: reasons(), Errors: errs(), PolicyVersion: str()}
	}
	if r.IntN(2) == 0 {
		rec.Peer = &Peer{PID: r.Int32(), UID: r.Uint32(), GID: r.Uint32(), Exe: str()}
	}
	d := &Decision{DecisionID: str(), Decision: str(), Reasons: reasons(), Errors: errs(), PolicyVersion: str(), Seq: r.Int64N(3)}
	return rec, d
}

func checkSameAsMarshal(t *testing.T, seed uint64, s string) {
	rec, d := randomRecord(seed, s)
	got, err := MarshalRecord(rec)
	want, wantErr := json.Marshal(rec)
	if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("seed %d, %q: record\n got %s (%v)\nwant %s (%v)", seed, s, got, err, want, wantErr)
	}
	got, err = MarshalDecision(d)
	want, wantErr = json.Marshal(d)
	if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
		t.Fatalf("seed %d, %q: decision\n got %s (%v)\nwant %s (%v)", seed, s, got, err, want, wantErr)
	}
}

// TestAppendRecord_SameAsEncodingJSON: the hand-written encoder writes the
// bytes json.Marshal writes, for records of every shape.
func TestAppendRecord_SameAsEncodingJSON(t *testing.T) {
	for seed := range uint64(3000) {
		checkSameAsMarshal(t, seed, "x")
	}
}

func FuzzAppendRecord(f *testing.F) {
	f.Add(uint64(1), "plain")
	f.Add(uint64(2), "<&>\"\\\u2028\x00\xff")
	f.Fuzz(checkSameAsMarshal)
}
