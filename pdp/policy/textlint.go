package policy

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// lintText warns about text in a policy file that does not read the way it
// displays, as Cedar's own validator does (its BidiChars* and MixedScript*
// warnings; Unicode TR 36 and UTS 39):
//   - a bidirectional control character anywhere (in a string, a comment or
//     between tokens) can reorder what an editor or a review shows
//     ("Trojan Source", CVE-2021-42574);
//   - a string (an entity id such as Agent::"bіlling-bot", an attribute
//     name, a value) whose letters come from scripts that are not used
//     together, such as Latin with one Cyrillic letter, can look like
//     another name while matching nothing it resembles.
//
// Cedar's grammar allows only ASCII identifiers, so the names at risk are
// the quoted ones.
func lintText(f PolicyFile) []Problem {
	var out []Problem
	warn := func(line, col int, format string, args ...any) {
		out = append(out, Problem{File: f.Path, Line: line, Column: col, Severity: SeverityWarning, Message: fmt.Sprintf(format, args...)})
	}
	text := f.Content
	line, col := 1, 1
	inString, inComment, escaped := false, false, false
	var str strings.Builder
	strLine, strCol := 0, 0
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		if isBidiControl(r) {
			where := "between tokens"
			switch {
			case inString:
				where = "in a string"
			case inComment:
				where = "in a comment"
			}
			warn(line, col, "bidirectional control character %U %s: the text may display in an order other than the one Cedar reads; remove it", r, where)
		}
		switch {
		case inComment:
			if r == '\n' {
				inComment = false
			}
		case inString:
			switch {
			case escaped:
				escaped = false
				str.WriteRune(r)
			case r == '\\':
				escaped = true
			case r == '"':
				inString = false
				if scripts := mixedScripts(str.String()); scripts != nil {
					warn(strLine, strCol, "string %q mixes scripts (%s): it may look like a name it does not match; write it in one script", str.String(), strings.Join(scripts, " and "))
				}
			default:
				str.WriteRune(r)
			}
		case r == '"':
			inString, escaped = true, false
			str.Reset()
			strLine, strCol = line, col
		case r == '/' && strings.HasPrefix(text[i:], "//"):
			inComment = true
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
	return out
}

// isBidiControl reports the characters Unicode's bidirectional algorithm
// treats as explicit formatting: embeddings, overrides, isolates and marks.
func isBidiControl(r rune) bool {
	switch {
	case r >= 0x202A && r <= 0x202E, // LRE, RLE, PDF, LRO, RLO
		r >= 0x2066 && r <= 0x2069,            // LRI, RLI, FSI, PDI
		r == 0x200E, r == 0x200F, r == 0x061C: // LRM, RLM, ALM
		return true
	}
	return false
}

// scriptOrder lists the scripts checked, Latin first: almost every letter
// in a policy is Latin, and the search stops at the first match.
var scriptOrder = func() []string {
	names := []string{"Latin", "Cyrillic", "Greek", "Han", "Hiragana", "Katakana", "Hangul", "Bopomofo", "Arabic", "Hebrew", "Armenian", "Georgian", "Cherokee"}
	for name := range unicode.Scripts {
		if !slices.Contains(names, name) && name != "Common" && name != "Inherited" {
			names = append(names, name)
		}
	}
	slices.Sort(names[13:]) // a stable order for the rest
	return names
}()

// augmented are the writing systems a script takes part in (UTS 39's
// augmented script sets): Japanese mixes Han, Hiragana and Katakana, Korean
// Han and Hangul, and these are not mixed scripts. Latin goes with each of
// them, as UTS 39's "highly restrictive" level allows ("東京タワー-bot").
var augmented = map[string][]string{
	"Latin":    {"Latin", "Jpan", "Kore", "Hanb"},
	"Han":      {"Jpan", "Kore", "Hanb"},
	"Hiragana": {"Jpan"},
	"Katakana": {"Jpan"},
	"Hangul":   {"Kore"},
	"Bopomofo": {"Hanb"},
}

// mixedScripts returns the scripts of s's letters when no one writing
// system covers them all, and nil when s is single-script. Characters of
// the Common and Inherited scripts (digits, punctuation, combining marks)
// go with any script.
func mixedScripts(s string) []string {
	var seen []string   // scripts met, in order
	var common []string // writing systems that cover every letter so far
	started := false
	for _, r := range s {
		if r < utf8.RuneSelf && !unicode.IsLetter(r) {
			continue
		}
		script := scriptOf(r)
		if script == "" {
			continue
		}
		if !slices.Contains(seen, script) {
			seen = append(seen, script)
		}
		sets := augmented[script]
		if sets == nil {
			sets = []string{script}
		}
		if !started {
			common, started = slices.Clone(sets), true
			continue
		}
		common = slices.DeleteFunc(common, func(w string) bool { return !slices.Contains(sets, w) })
	}
	if !started || len(common) > 0 {
		return nil
	}
	return seen
}

// scriptOf is r's Unicode script, or "" for Common and Inherited.
func scriptOf(r rune) string {
	if r < utf8.RuneSelf {
		if unicode.IsLetter(r) {
			return "Latin"
		}
		return ""
	}
	for _, name := range scriptOrder {
		if unicode.Is(unicode.Scripts[name], r) {
			return name
		}
	}
	return ""
}
