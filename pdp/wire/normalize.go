package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"strings"

	"github.com/cedar-policy/cedar-go/types"
)

// Agents send whatever JSON their tool calls carry. Cedar's JSON has no
// floats and no null, so rather than refusing such requests the engine
// normalises them, and logs the normalised form, so that a replay of the
// logged request sees exactly what the policies saw:
//
//   - a number written with a fraction or exponent becomes a Cedar decimal
//     when it has at most four fractional digits and is in decimal's range,
//     else the string of its JSON text;
//   - an integer outside Cedar's 64-bit Long becomes the string of its text;
//   - null drops the key from an object, or the element from an array;
//   - {"__entity":…} and {"__extn":…} keep their Cedar JSON meaning.

// normalized is one normalised JSON value: the Cedar value the policies see
// and the canonical JSON (sorted keys, no insignificant space) that is logged.
type normalized struct {
	value types.Value
	json  []byte
}

// NormalizeRecord normalises a JSON object. An absent or null object is the
// empty record. field names the object in errors.
func NormalizeRecord(raw json.RawMessage, field string, check func(string) error) (types.Record, json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return types.Record{}, json.RawMessage("{}"), nil
	}
	if rec, canonical, ok := normalizeFast(raw, check); ok {
		return rec, canonical, nil
	}
	return normalizeRecordStrict(raw, field, check)
}

// normalizeRecordStrict is normalizeRecord through encoding/json's tree:
// every input, every error.
func normalizeRecordStrict(raw json.RawMessage, field string, check func(string) error) (types.Record, json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var tree any
	if err := dec.Decode(&tree); err != nil {
		return types.Record{}, nil, BadRequest(field, fmt.Errorf("malformed JSON: %w", err))
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return types.Record{}, nil, BadRequest(field, errors.New("want a JSON object"))
	}
	var buf bytes.Buffer
	v, err := normalizeValue(obj, field, &buf, check)
	if err != nil {
		return types.Record{}, nil, err
	}
	rec, ok := v.(types.Record)
	if !ok {
		// An object that is a Cedar escape ({"__entity":…}) is not a record.
		return types.Record{}, nil, BadRequest(field, errors.New("want a record, got an escaped Cedar value"))
	}
	return rec, buf.Bytes(), nil
}

// normalizeValue converts one decoded JSON value to Cedar, writing its
// canonical JSON to buf. It returns nil for a value that is dropped (null).
func normalizeValue(v any, field string, buf *bytes.Buffer, check func(string) error) (types.Value, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case bool:
		if v {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
		return types.Boolean(v), nil
	case string:
		if err := check(v); err != nil {
			return nil, BadRequest(field, err)
		}
		writeJSONString(buf, v)
		return types.String(v), nil
	case json.Number:
		return normalizeNumber(v, buf), nil
	case []any:
		vals := make([]types.Value, 0, len(v))
		buf.WriteByte('[')
		first := true
		for i, e := range v {
			if e == nil {
				continue
			}
			if !first {
				buf.WriteByte(',')
			}
			first = false
			cv, err := normalizeValue(e, fmt.Sprintf("%s[%d]", field, i), buf, check)
			if err != nil {
				return nil, err
			}
			vals = append(vals, cv)
		}
		buf.WriteByte(']')
		return types.NewSet(vals...), nil
	case map[string]any:
		if len(v) == 1 {
			if e, ok := v["__entity"]; ok {
				if uid, ok := plainEntity(e); ok {
					// The common escape, without a round trip through cedar-go's
					// decoder; written as cedar-go writes it.
					buf.WriteString(`{"__entity":{"type":`)
					writeJSONString(buf, string(uid.Type))
					buf.WriteString(`,"id":`)
					writeJSONString(buf, string(uid.ID))
					buf.WriteString(`}}`)
					return uid, nil
				}
				return escapedValue(v, field, buf)
			}
			if _, ok := v["__extn"]; ok {
				return escapedValue(v, field, buf)
			}
		}
		keys := make([]string, 0, len(v))
		for k, e := range v {
			if e != nil {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		m := make(types.RecordMap, len(keys))
		buf.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(buf, k)
			buf.WriteByte(':')
			cv, err := normalizeValue(v[k], field+"."+k, buf, check)
			if err != nil {
				return nil, err
			}
			m[types.String(k)] = cv
		}
		buf.WriteByte('}')
		return types.NewRecord(m), nil
	}
	return nil, BadRequest(field, fmt.Errorf("unsupported JSON value %T", v))
}

// plainEntity reads {"type":"T","id":"x"} with a valid type, the body of
// an __entity escape; anything else goes to cedar-go.
func plainEntity(v any) (types.EntityUID, bool) {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 2 {
		return types.EntityUID{}, false
	}
	typ, ok1 := m["type"].(string)
	id, ok2 := m["id"].(string)
	if !ok1 || !ok2 {
		return types.EntityUID{}, false
	}
	if _, err := types.NewEntityType(typ); err != nil {
		return types.EntityUID{}, false
	}
	return types.NewEntityUID(types.EntityType(typ), types.String(id)), true
}

// escapedValue hands Cedar's own escapes to cedar-go, so that they mean in a
// request exactly what they mean in a Cedar JSON file.
func escapedValue(v map[string]any, field string, buf *bytes.Buffer) (types.Value, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, BadRequest(field, err)
	}
	var cv types.Value
	if err := types.UnmarshalJSON(raw, &cv); err != nil {
		return nil, BadRequest(field, fmt.Errorf("invalid Cedar escape %s: %w", truncate(raw, 80), err))
	}
	out, err := json.Marshal(cv)
	if err != nil {
		return nil, BadRequest(field, err)
	}
	buf.Write(out)
	return cv, nil
}

var decimalScale = big.NewInt(10000)

func normalizeNumber(n json.Number, buf *bytes.Buffer) types.Value {
	s := n.String()
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			buf.WriteString(s)
			return types.Long(i)
		}
		writeJSONString(buf, s)
		return types.String(s)
	}
	if d, ok := toDecimal(s); ok {
		out, _ := d.MarshalJSON() // cannot fail: a decimal always marshals
		buf.Write(out)
		return d
	}
	writeJSONString(buf, s)
	return types.String(s)
}

// toDecimal converts the text of a JSON number to a Cedar decimal when it is
// exactly representable: at most four fractional digits, within int64/10⁴.
func toDecimal(s string) (types.Decimal, bool) {
	if len(s) > 64 {
		return types.Decimal{}, false // refuses exponents that would make huge rationals
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return types.Decimal{}, false
	}
	r.Mul(r, new(big.Rat).SetInt(decimalScale))
	if !r.IsInt() {
		return types.Decimal{}, false
	}
	i := r.Num()
	if !i.IsInt64() || i.Int64() == math.MinInt64 {
		return types.Decimal{}, false
	}
	d, err := types.NewDecimal(i.Int64(), -4)
	if err != nil {
		return types.Decimal{}, false
	}
	return d, true
}

// writeJSONString writes s exactly as encoding/json would.
func writeJSONString(buf *bytes.Buffer, s string) {
	buf.Write(appendJSONString(buf.AvailableBuffer(), s))
}
