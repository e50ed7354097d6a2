package policy

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A parse error, explained. cedar-go reports a syntax error as terse as
// `parse error "": exact got  want }`, at the position of the token after
// the one at fault. explainParse turns it into what a person can act on:
// what was expected, what was found (described, never quoted: a problem's
// message reaches /v1/status, and a file's words are not for that), and
// where the construct being closed and the policy began. The source lines,
// with carets, go in Problem.Source, which only the CLI prints.

// parseErr is cedar-go's message after the position: `parse error "TOK": MSG`.
var parseErr = regexp.MustCompile(`^parse error "((?:[^"\\]|\\.)*)": (.*)$`)

var (
	exactWant = regexp.MustCompile(`^exact got (.*) want (\S+)$`)
	gotWant   = regexp.MustCompile(`^got (.*) want (\S+)$`)
	badEffect = regexp.MustCompile(`^unexpected effect: (.*)$`)
)

// srcToken is one token of a policy file, with where it starts.
type srcToken struct {
	text      string
	line, col int
	offset    int
}

// explainParse rewrites a parse problem of file content src whose raw
// message (position already removed) is msg, reported at line:col. It
// returns the new message, its position, and the source lines to show.
func explainParse(src, msg string, line, col int) (string, int, int, string) {
	m := parseErr.FindStringSubmatch(msg)
	if m == nil {
		if strings.Contains(msg, "literal not terminated") {
			return `a string that is not closed: add its closing "`, line, col, caret(src, line, col, `the string begins here`, 0, 0, "")
		}
		return redactParse(msg), line, col, caret(src, line, col, "here", 0, 0, "")
	}
	found, inner := unquote(m[1]), m[2]
	toks := tokenize(src)
	at := len(toks) // the token at line:col, or the end
	for i, t := range toks {
		if t.line > line || (t.line == line && t.col >= col) {
			at = i
			break
		}
	}
	var got string
	if mm := exactWant.FindStringSubmatch(inner); mm != nil {
		got = mm[1]
	} else if mm := gotWant.FindStringSubmatch(inner); mm != nil {
		got = mm[1]
	} else if mm := badEffect.FindStringSubmatch(inner); mm != nil {
		got = mm[1]
	} else {
		got = found
	}
	// cedar-go points after the token at fault when it has consumed it.
	bad := at
	if got != "" && (at >= len(toks) || toks[at].text != got) && at > 0 && toks[at-1].text == got {
		bad = at - 1
	}
	eLine, eCol := line, col
	if bad < len(toks) {
		eLine, eCol = toks[bad].line, toks[bad].col
	} else if got == "" {
		eLine, eCol = endOf(src)
	}
	// The open brackets before the token at fault, and where its policy began.
	var stack []srcToken
	policyStart := -1
	for i := 0; i < bad && i < len(toks); i++ {
		t := toks[i]
		if policyStart < 0 {
			policyStart = i
		}
		switch t.text {
		case "(", "[", "{":
			stack = append(stack, t)
		case ")", "]", "}":
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case ";":
			if len(stack) == 0 {
				policyStart = -1
			}
		}
	}
	what := "the end of the file"
	if got != "" {
		what = describeToken(got)
	}
	var text string
	var open *srcToken
	if len(stack) > 0 {
		open = &stack[len(stack)-1]
	}
	closer := map[string]string{"(": ")", "[": "]", "{": "}"}
	switch {
	case exactWant.MatchString(inner) || gotWant.MatchString(inner):
		want := exactWant.FindStringSubmatch(inner)
		if want == nil {
			want = gotWant.FindStringSubmatch(inner)
		}
		w := want[2]
		switch {
		case open != nil && (w == closer[open.text] || w == ","):
			if w == "," {
				text = fmt.Sprintf(`expected "," or the "%s" that closes the "%s" at %d:%d, found %s`, closer[open.text], open.text, open.line, open.col, what)
			} else {
				text = fmt.Sprintf(`expected "%s" to close the "%s" at %d:%d, found %s`, w, open.text, open.line, open.col, what)
			}
		case w == ";":
			text = fmt.Sprintf(`expected ";" to end the policy, found %s`, what)
		default:
			text = fmt.Sprintf(`expected "%s", found %s`, w, what)
		}
	case badEffect.MatchString(inner):
		text = fmt.Sprintf(`expected "permit" or "forbid" to begin a policy, found %s`, what)
	case strings.HasPrefix(inner, "expected ident"):
		text = fmt.Sprintf("expected a name, found %s", what)
	case inner == "invalid primary":
		text = fmt.Sprintf("expected a value or an expression, found %s", what)
	case inner == "unexpected token":
		text = fmt.Sprintf("unexpected %s", what)
	default:
		text = redactParse(inner)
	}
	if policyStart >= 0 && policyStart < len(toks) {
		p := toks[policyStart]
		text += fmt.Sprintf(" (in the policy that begins at %d:%d)", p.line, p.col)
	}
	var oLine, oCol int
	var oLabel string
	if open != nil && strings.Contains(text, "close") {
		oLine, oCol, oLabel = open.line, open.col, fmt.Sprintf(`"%s" opened here`, open.text)
	}
	return text, eLine, eCol, caret(src, eLine, eCol, "here", oLine, oCol, oLabel)
}

// describeToken names a token by its kind. Punctuation and Cedar's keywords
// are grammar and shown; names, strings and numbers are the file's own
// words and are not.
func describeToken(t string) string {
	switch {
	case strings.HasPrefix(t, `"`):
		return "a string"
	case cedarKeywords[t]:
		return fmt.Sprintf("%q", t)
	case t != "" && unicode.IsDigit(rune(t[0])):
		return "a number"
	case t != "" && (unicode.IsLetter(rune(t[0])) || t[0] == '_'):
		return "a name"
	case utf8.RuneCountInString(t) <= 2:
		return fmt.Sprintf("%q", t)
	}
	return "a token"
}

var cedarKeywords = map[string]bool{
	"permit": true, "forbid": true, "when": true, "unless": true, "principal": true, "action": true,
	"resource": true, "context": true, "in": true, "has": true, "like": true, "is": true,
	"if": true, "then": true, "else": true, "true": true, "false": true,
}

func unquote(s string) string {
	return strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(s)
}

// tokenize splits Cedar source into tokens, skipping spaces and // comments,
// enough to find brackets and positions (not to parse).
func tokenize(src string) []srcToken {
	var toks []srcToken
	line, col := 1, 1
	for i := 0; i < len(src); {
		r, size := utf8.DecodeRuneInString(src[i:])
		start, sLine, sCol := i, line, col
		advance := func(n int) { // n bytes, none of them a newline
			col += utf8.RuneCountInString(src[i : i+n])
			i += n
		}
		switch {
		case r == '\n':
			line, col = line+1, 1
			i += size
			continue
		case unicode.IsSpace(r):
			advance(size)
			continue
		case strings.HasPrefix(src[i:], "//"):
			n := strings.IndexByte(src[i:], '\n')
			if n < 0 {
				n = len(src) - i
			}
			advance(n)
			continue
		case r == '"':
			n := 1
			for n < len(src)-i && src[i+n] != '"' && src[i+n] != '\n' {
				if src[i+n] == '\\' {
					n++
				}
				n++
			}
			n = min(n+1, len(src)-i)
			advance(n)
		case unicode.IsLetter(r) || r == '_' || unicode.IsDigit(r):
			n := 0
			for n < len(src)-i {
				c, s := utf8.DecodeRuneInString(src[i+n:])
				if !unicode.IsLetter(c) && !unicode.IsDigit(c) && c != '_' {
					break
				}
				n += s
			}
			advance(n)
		default:
			n := size
			for _, op := range []string{"::", "==", "!=", "<=", ">=", "&&", "||"} {
				if strings.HasPrefix(src[i:], op) {
					n = 2
				}
			}
			advance(n)
		}
		toks = append(toks, srcToken{text: src[start:i], line: sLine, col: sCol, offset: start})
	}
	return toks
}

// endOf is the position just after the last character of src that is not
// a space: where a missing closer belongs.
func endOf(src string) (int, int) {
	trimmed := strings.TrimRightFunc(src, unicode.IsSpace)
	lines := strings.Split(trimmed, "\n")
	return len(lines), utf8.RuneCountInString(lines[len(lines)-1]) + 1
}

// caret shows line:col of src with a caret under it, labelled, and first
// the line of an opening bracket (oLine > 0) if it is another line.
func caret(src string, line, col int, label string, oLine, oCol int, oLabel string) string {
	lines := strings.Split(src, "\n")
	show := func(b *strings.Builder, l, c int, lab string) {
		if l < 1 || l > len(lines) {
			return
		}
		text := strings.TrimRight(lines[l-1], "\r")
		fmt.Fprintf(b, "%5d | %s\n      | ", l, text)
		i := 0
		for _, r := range text {
			if i >= c-1 {
				break
			}
			if r == '\t' {
				b.WriteByte('\t')
			} else {
				b.WriteByte(' ')
			}
			i++
		}
		for ; i < c-1; i++ {
			b.WriteByte(' ')
		}
		fmt.Fprintf(b, "^ %s\n", lab)
	}
	var b strings.Builder
	if oLine > 0 && oLine != line {
		show(&b, oLine, oCol, oLabel)
	}
	show(&b, line, col, label)
	return strings.TrimRight(b.String(), "\n")
}
