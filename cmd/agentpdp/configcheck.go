package main

import (
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

// checkShape compares a decoded YAML value with the Go type it will be
// decoded into and describes every mismatch in the file's own terms: the
// key's dotted path, what the key wants and what the file has
// ("approvals.ttl: want a duration such as 15m, got 5"). The YAML library's
// own errors name Go types and struct fields, which a user never wrote.
func checkShape(path string, v any, t reflect.Type) []string {
	if v == nil { // "key:" with no value leaves the default
		return nil
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == reflect.TypeFor[time.Duration]() {
		s, ok := v.(string)
		if !ok {
			return []string{fmt.Sprintf("%s: want a duration such as 15m, 2s or 100ms, got %s", path, yamlValue(v))}
		}
		if _, err := time.ParseDuration(s); err != nil {
			return []string{fmt.Sprintf("%s: want a duration such as 15m, 2s or 100ms, got %q", path, s)}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want a mapping of keys (%s), got %s", path, strings.Join(yamlKeys(t), ", "), yamlValue(v))}
		}
		var errs []string
		for _, k := range sortedMapKeys(m) {
			f, ok := yamlField(t, k)
			if !ok {
				msg := fmt.Sprintf("unknown key %q", join(path, k))
				if s := suggest(k, yamlKeys(t)); s != "" {
					msg += fmt.Sprintf("; did you mean %q?", join(path, s))
				} else {
					msg += fmt.Sprintf("; the keys here are %s", strings.Join(yamlKeys(t), ", "))
				}
				errs = append(errs, msg)
				continue
			}
			errs = append(errs, checkShape(join(path, k), m[k], f.Type)...)
		}
		return errs
	case reflect.Slice:
		l, ok := v.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want a list, got %s", path, yamlValue(v))}
		}
		var errs []string
		for i, e := range l {
			errs = append(errs, checkShape(fmt.Sprintf("%s[%d]", path, i), e, t.Elem())...)
		}
		return errs
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want a mapping, got %s", path, yamlValue(v))}
		}
		var errs []string
		for _, k := range sortedMapKeys(m) {
			errs = append(errs, checkShape(join(path, k), m[k], t.Elem())...)
		}
		return errs
	case reflect.String:
		if _, ok := v.(string); !ok {
			return []string{fmt.Sprintf("%s: want text, got %s (quote it if it is meant as text)", path, yamlValue(v))}
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return []string{fmt.Sprintf("%s: want true or false, got %s", path, yamlValue(v))}
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if !isWhole(v) {
			return []string{fmt.Sprintf("%s: want a whole number, got %s", path, yamlValue(v))}
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if !isWhole(v) || reflect.ValueOf(v).Kind() < reflect.Uint && reflect.ValueOf(v).Int() < 0 {
			return []string{fmt.Sprintf("%s: want a whole number, not negative, got %s", path, yamlValue(v))}
		}
	}
	return nil
}

func isWhole(v any) bool {
	switch v.(type) {
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return true
	}
	return false
}

// yamlValue shows a value as the file wrote it: text quoted, a number or a
// bool bare, a list or mapping by kind.
func yamlValue(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	default:
		return fmt.Sprint(v)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlField finds the field of struct t that the YAML key k decodes into.
func yamlField(t reflect.Type, k string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == k && name != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// yamlKeys are the keys struct t accepts, sorted.
func yamlKeys(t reflect.Type) []string {
	var keys []string
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	slices.Sort(keys)
	return keys
}

func sortedMapKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
