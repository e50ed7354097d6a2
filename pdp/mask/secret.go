package mask

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"unicode/utf8"
)

// ErrSecret is the error every secret found by Secret matches (errors.Is).
var ErrSecret = errors.New("looks like a secret")

// secretError is a secret of one kind; its text never quotes the value.
type secretError struct{ kind string }

func (e *secretError) Error() string {
	return "looks like a secret (" + e.kind + "): mask its place with the mask config, or send a reference to it, never the secret"
}

func (e *secretError) Is(target error) bool { return target == ErrSecret }

// The kinds, made once: refusing allocates nothing.
var (
	errGitHub      = &secretError{"a GitHub token"}
	errGitLab      = &secretError{"a GitLab token"}
	errSlack       = &secretError{"a Slack token"}
	errStripe      = &secretError{"a Stripe key"}
	errAnthropic   = &secretError{"an Anthropic API key"}
	errOpenAI      = &secretError{"an OpenAI API key"}
	errAWS         = &secretError{"an AWS access key id"}
	errGoogle      = &secretError{"a Google API key"}
	errNPM         = &secretError{"an npm token"}
	errHuggingFace = &secretError{"a Hugging Face token"}
	errPyPI        = &secretError{"a PyPI token"}
	errPrivateKey  = &secretError{"a PEM private key"}
	errURLPassword = &secretError{"a password in a URL"}
	errBasic       = &secretError{"HTTP Basic credentials"}
	errEncoded     = &secretError{"a credential in base64 or hex"}
)

// The secrets Token finds besides raw tokens (an error matching ErrSecret)
// are those a secret scanner (gitleaks, trufflehog, GitHub secret
// scanning) would flag without knowing where they came from:
//
//   - a well-known prefixed secret, at the start of a word: GitHub (ghp_,
//     gho_, ghu_, ghs_, ghr_, github_pat_), GitLab (glpat-), Slack
//     (xox[abeprs]-), Stripe (sk_/rk_ live or test), Anthropic (sk-ant-),
//     OpenAI (sk- and 32 or more characters), AWS access key ids (AKIA,
//     ASIA, ABIA, ACCA and 16 more), Google API keys (AIza), npm (npm_),
//     Hugging Face (hf_), PyPI (pypi-AgEIcHlwaS5vcmc);
//   - a PEM private key ("PRIVATE KEY-----"), a URL with a password
//     (scheme://user:password@host);
//   - HTTP Basic credentials ("Basic", spaces or tabs, and base64 of
//     user:password);
//   - one layer of encoding: a run of 16 or more standard or URL-safe
//     base64 characters, or 24 or more hex digits, that decodes to
//     UTF-8 text holding a JWT, a bearer token, any of the above, or a
//     secret-named assignment (token:…, password=…, api_key=…, secret…).
//
// Hashes, UUIDs, random ids and base64 of ordinary text decode to bytes
// that are not text, or to text with none of these, and pass. An opaque
// random secret cannot be told from an id: mask it by its place instead.
//
// scan is one pass over s with a table lookup a byte, which also finds
// the candidates for RawToken's regexps; it decodes only runs long enough
// to hold a credential, and stops at the first decoded byte that is not
// printable text, so ordinary strings cost little.

// minRun is the shortest base64 run decoded: 16 characters, 12 bytes,
// as long as "token:secret".
const (
	minRun    = 16
	minHexRun = 24
)

// b64 classes: which base64 alphabet a byte belongs to.
const (
	cAlnum = 1 << iota // A-Z a-z 0-9
	cStd               // + /
	cURL               // - _
	cHex               // 0-9 a-f A-F
)

var class = func() (t [256]uint8) {
	for c := '0'; c <= '9'; c++ {
		t[c] = cAlnum | cHex
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = cAlnum
		t[c-'a'+'A'] = cAlnum
	}
	for c := 'a'; c <= 'f'; c++ {
		t[c] |= cHex
		t[c-'a'+'A'] |= cHex
	}
	t['+'], t['/'] = cStd, cStd
	t['-'], t['_'] = cURL, cURL
	return t
}()

// b64val maps both base64 alphabets to their 6-bit values; 0xff is none.
var b64val = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(std); i++ {
		t[std[i]] = byte(i)
	}
	t['-'], t['_'] = 62, 63
	return t
}()

func scan(s string, decode bool) error {
	if len(s) < 8 {
		return nil
	}
	var jwt, bearer bool // candidates for RawToken's regexps
	for i := 0; i < len(s); {
		if class[s[i]] == 0 {
			i++
			continue
		}
		j := i + 1
		for j < len(s) && class[s[j]] != 0 {
			j++
		}
		run := s[i:j]
		// Each rule below looks at a run only when its first test, one or
		// two byte comparisons, lets it: a sentence's words pass them all.
		// A JWT's header segment holds "eyJ" and 8 more; "bearer" starts a
		// word (jwtToken, bearerToken) and the run ends there, at a space
		// or a colon.
		if len(run) >= 11 && !jwt {
			jwt = strings.Contains(run, "eyJ")
		}
		if len(run) >= 6 && !bearer {
			bearer = endsBearer(run)
		}
		if len(s) < 12 {
			i = j
			continue
		}
		var err error
		if len(run) >= 20 {
			err = prefixed(run)
		}
		switch {
		case err != nil:
		case s[i] == 'K' && strings.HasPrefix(run, "KEY-----") && strings.HasSuffix(s[:i], "PRIVATE "):
			// The PEM armour of a private key.
			err = errPrivateKey
		case j+2 < len(s) && s[j] == ':' && s[j+1] == '/' && s[j+2] == '/' && urlPassword(s[j+3:]):
			// "scheme://": a URL, whose userinfo holds a password.
			err = errURLPassword
		case decode && len(run) >= 4:
			basic := afterBasic(s[:i])
			if basic || len(run) >= minRun {
				err = encoded(run, basic)
			}
		}
		if err != nil {
			// A raw token in the same string is named as one.
			if raw := RawToken(s); raw != nil {
				return raw
			}
			return err
		}
		i = j
	}
	if (jwt || bearer) && RawToken(s) != nil {
		return ErrRawToken
	}
	return nil
}

// endsBearer reports whether run ends with "bearer" (any case) at the
// start of a word: the run's start, or after '+', '/' or '-'.
func endsBearer(run string) bool {
	n := len(run)
	if run[n-6]|0x20 != 'b' || !strings.EqualFold(run[n-6:], "bearer") {
		return false
	}
	return n == 6 || class[run[n-7]]&cAlnum == 0 && run[n-7] != '_'
}

// prefixed finds a well-known prefixed secret at the start of a word of
// run: its start, or after a character that is not a letter or digit.
func prefixed(run string) error {
	if len(run) < 20 {
		return nil
	}
	for p := 0; p+20 <= len(run); p++ {
		if p > 0 && class[run[p-1]]&cAlnum != 0 {
			continue
		}
		w := run[p:]
		var err error
		switch w[0] {
		case 'g':
			switch {
			case len(w) >= 40 && w[1] == 'h' && strings.IndexByte("pousr", w[2]) >= 0 && w[3] == '_' && count(w[4:], cAlnum) >= 36:
				err = errGitHub
			case strings.HasPrefix(w, "github_pat_") && count(w[11:], cAlnum|cURL) >= 22:
				err = errGitHub
			case strings.HasPrefix(w, "glpat-") && count(w[6:], cAlnum|cURL) >= 20:
				err = errGitLab
			}
		case 'x':
			if strings.HasPrefix(w, "xox") && strings.IndexByte("abeprs", w[3]) >= 0 && w[4] == '-' && count(w[5:], cAlnum|cURL) >= 10 {
				err = errSlack
			}
		case 's', 'r':
			switch {
			case (strings.HasPrefix(w[1:], "k_live_") || strings.HasPrefix(w[1:], "k_test_")) && count(w[8:], cAlnum) >= 16:
				err = errStripe
			case w[0] == 's' && strings.HasPrefix(w, "sk-ant-") && count(w[7:], cAlnum|cURL) >= 20:
				err = errAnthropic
			case w[0] == 's' && w[1] == 'k' && w[2] == '-' && count(w[3:], cAlnum|cURL) >= 32:
				err = errOpenAI
			}
		case 'A':
			switch {
			case (strings.HasPrefix(w, "AKIA") || strings.HasPrefix(w, "ASIA") || strings.HasPrefix(w, "ABIA") || strings.HasPrefix(w, "ACCA")) &&
				upperDigits(w[4:]) == 16:
				err = errAWS
			case strings.HasPrefix(w, "AIza") && count(w[4:], cAlnum|cURL) >= 35:
				err = errGoogle
			}
		case 'n':
			if strings.HasPrefix(w, "npm_") && count(w[4:], cAlnum) >= 36 {
				err = errNPM
			}
		case 'h':
			if strings.HasPrefix(w, "hf_") && count(w[3:], cAlnum) >= 30 {
				err = errHuggingFace
			}
		case 'p':
			if strings.HasPrefix(w, "pypi-AgEIcHlwaS5vcmc") {
				err = errPyPI
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// count is how many bytes at the start of s are of the classes in mask.
func count(s string, mask uint8) int {
	n := 0
	for n < len(s) && class[s[n]]&mask != 0 {
		n++
	}
	return n
}

// upperDigits is how many of A-Z and 0-9 start s, or -1 if a lower-case
// letter follows them (an AWS key id is upper case throughout).
func upperDigits(s string) int {
	n := 0
	for n < len(s) && (s[n] >= 'A' && s[n] <= 'Z' || s[n] >= '0' && s[n] <= '9') {
		n++
	}
	if n < len(s) && s[n] >= 'a' && s[n] <= 'z' {
		return -1
	}
	return n
}

// urlPassword reports whether the authority after "scheme://" has
// userinfo with a password: user:password@host.
func urlPassword(rest string) bool {
	colon := -1
	for i := 0; i < len(rest); i++ {
		switch rest[i] {
		case '/', '?', '#', ' ', '\t', '\r', '\n', '"', '\'', '<', '>':
			return false // the authority ended without userinfo
		case ':':
			if colon < 0 {
				colon = i
			}
		case '@':
			return colon >= 0 && colon+1 < i
		}
	}
	return false
}

// encoded looks for a credential in run decoded, from its start and from
// after each of its first three separators (-, _, + or /), so that an
// encoded secret with a prefix (s-…, key_…, a path) is found too.
func encoded(run string, basic bool) error {
	if err := decoded(run, basic); err != nil {
		return err
	}
	for p, seps := 1, 0; seps < 3 && len(run)-p >= minRun; p++ {
		if class[run[p-1]]&cAlnum == 0 {
			seps++
			if err := decoded(run[p:], false); err != nil {
				return err
			}
		}
	}
	return nil
}

// decoded decodes run, one layer of hex or base64, when it decodes to
// printable text, and looks for a credential in that text. basic says
// "Basic " came before it: then user:password is a credential too.
func decoded(run string, basic bool) error {
	// Random bytes (a digest, a key, an id) are not text: the checks stop
	// at the first decoded byte that is not, before anything is stored.
	var text []byte
	hexText := hexNot
	if len(run) >= minHexRun && len(run)%2 == 0 {
		hexText = printableHex(run)
	}
	switch hexText {
	case hexBinary:
		return nil
	case hexPrintable:
		text, _ = hex.DecodeString(run)
	default:
		if len(run)%4 == 1 || !printableB64(run) {
			return nil
		}
		var kinds uint8
		for i := 0; i < len(run); i++ {
			kinds |= class[run[i]]
		}
		enc := base64.RawStdEncoding
		switch {
		case kinds&cStd != 0 && kinds&cURL != 0:
			return nil // both alphabets: a path or an id, not base64
		case kinds&cURL != 0:
			enc = base64.RawURLEncoding
		}
		var err error
		if text, err = enc.DecodeString(run); err != nil {
			return nil
		}
	}
	if !utf8.Valid(text) {
		return nil
	}
	t := string(text)
	if scan(t, false) != nil || assignsSecret(t) {
		return errEncoded
	}
	if basic && basicCredentials.MatchString(t) {
		return errBasic
	}
	return nil
}

// printable reports whether b is text: printable ASCII, tab, CR or LF.
func printable(b byte) bool { return b >= 0x20 && b < 0x7f || b == '\t' || b == '\n' || b == '\r' }

// textReader follows decoded bytes as UTF-8 text: printable ASCII, tab,
// CR, LF, and the multi-byte sequences of other characters (José, ✓, 密码),
// whose shape only it checks (a lead byte, then its continuation bytes);
// utf8.Valid decides the rest once decoded. Random bytes still stop within
// a few: a byte of 0x80-0xBF cannot lead, and a lead needs 0x80-0xBF after.
type textReader struct{ need int }

func (r *textReader) text(b byte) bool {
	switch {
	case r.need > 0:
		r.need--
		return b&0xC0 == 0x80
	case printable(b):
		return true
	case b >= 0xC2 && b <= 0xDF:
		r.need = 1
	case b >= 0xE0 && b <= 0xEF:
		r.need = 2
	case b >= 0xF0 && b <= 0xF4:
		r.need = 3
	default:
		return false
	}
	return true
}

// afterBasic reports whether before, the text before a run, ends with
// "Basic" (any case) and one or more spaces or tabs (RFC 9110's 1*SP, and
// the tab a pasted header may hold).
func afterBasic(before string) bool {
	n := len(before)
	for n > 0 && (before[n-1] == ' ' || before[n-1] == '\t') {
		n--
	}
	return n < len(before) && n >= 5 && before[n-5]|0x20 == 'b' && strings.EqualFold(before[n-5:n], "basic")
}

// printableB64 decodes run (either alphabet, no padding) without storing
// it, stopping at the first byte that is not printable text: random bytes
// (a digest, a key, an id) stop within the first few.
func printableB64(run string) bool {
	var acc uint32
	var tr textReader
	bits := 0
	for i := 0; i < len(run); i++ {
		acc = acc<<6 | uint32(b64val[run[i]])
		bits += 6
		if bits >= 8 {
			bits -= 8
			if !tr.text(byte(acc >> bits)) {
				return false
			}
		}
	}
	return true
}

// What printableHex found.
const (
	hexNot       = iota // a character that is not a hex digit came first
	hexBinary           // hex digits, decoding to a byte that is not text
	hexPrintable        // hex digits throughout, decoding to text
)

// printableHex decodes run as hex without storing it, stopping at the
// first byte that is not text or the first character that is not a digit.
func printableHex(run string) int {
	var tr textReader
	for i := 0; i+1 < len(run); i += 2 {
		if class[run[i]]&class[run[i+1]]&cHex == 0 {
			return hexNot
		}
		if !tr.text(unhex(run[i])<<4 | unhex(run[i+1])) {
			return hexBinary
		}
	}
	return hexPrintable
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// assignsSecret is secretAssignment.MatchString(t), skipping the regexp
// for text with no ':' or '=' or none of its key words (most text).
func assignsSecret(t string) bool {
	if strings.IndexByte(t, ':') < 0 && strings.IndexByte(t, '=') < 0 {
		return false
	}
	for _, w := range secretWords {
		if containsFold(t, w) {
			return secretAssignment.MatchString(t)
		}
	}
	return false
}

// secretWords are the stems secretAssignment's names contain.
var secretWords = []string{"pass", "pwd", "secret", "token", "key", "credential"}

// secretAssignment is a secret-named key given a value in decoded text:
// token:…, password=…, "api_key": "…" (gitleaks' generic rule, without its
// entropy test: the text was already hidden in an encoding).
var secretAssignment = regexp.MustCompile(`(?i)(?:passw(?:or)?d|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|credentials?)["']?\s*[:=]\s*["']?[^\s"',;&]{6,}`)

// basicCredentials is user:password, the decoded form of HTTP Basic.
var basicCredentials = regexp.MustCompile(`^[^:\s]{1,256}:[\x21-\x7e]{1,}$`)
