package mask_test

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/agentpdp/agentpdp/pdp/mask"
)

// The secrets below are fakes, built at run time so that the source holds
// nothing a secret scanner would flag.
func fake(prefix string, n int) string {
	const alnum = "a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ"
	var b strings.Builder
	b.WriteString(prefix)
	for i := range n {
		b.WriteByte(alnum[i%len(alnum)])
	}
	return b.String()
}

func b64[T string | []byte](s T) string    { return base64.StdEncoding.EncodeToString([]byte(s)) }
func b64url[T string | []byte](s T) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

const jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl"

// TestSecret_Refused: what a secret scanner flags is refused, bare, inside
// a longer string, or under one layer of base64 or hex; the error says
// what kind of secret, never the value.
func TestSecret_Refused(t *testing.T) {
	tokenSecret := "token:secret-" + fake("", 12)
	cases := map[string]string{
		"base64 of token:secret (issue 11)":  b64(tokenSecret),
		"the same, URL-safe":                 b64url(tokenSecret),
		"the same, embedded":                 "creds=" + b64(tokenSecret) + "&x=1",
		"the same, hex":                      hex.EncodeToString([]byte(tokenSecret)),
		"the same, after a prefix":           "s-" + b64(tokenSecret),
		"the same, in a path":                "/v1/keys/" + b64url(tokenSecret),
		"base64 of a JWT":                    b64(jwt),
		"base64 of password=":                b64("db password=" + fake("", 10)),
		"base64 of a JSON api_key":           b64(`{"api_key": "` + fake("", 20) + `"}`),
		"base64 of a GitHub token":           b64(fake("ghp_", 36)),
		"base64 of Bearer":                   b64("Bearer " + fake("", 24)),
		"HTTP Basic":                         "Basic " + b64("alice:"+fake("", 8)),
		"Authorization: Basic":               "Authorization: basic " + b64("svc-deploy:"+fake("", 12)),
		"GitHub classic":                     fake("ghp_", 36),
		"GitHub app":                         "x " + fake("ghs_", 36) + " y",
		"GitHub fine-grained":                fake("github_pat_", 82),
		"GitLab":                             fake("glpat-", 20),
		"Slack bot":                          "xoxb-" + fake("", 11) + "-" + fake("", 13),
		"Stripe live":                        fake("sk_live_", 24),
		"Stripe restricted test":             "key=" + fake("rk_test_", 24),
		"Anthropic":                          fake("sk-ant-api03-", 40),
		"OpenAI":                             fake("sk-proj-", 48),
		"AWS access key id":                  "aws_access_key_id=AKIA" + strings.ToUpper(fake("", 16)),
		"AWS temporary key id":               "ASIA" + strings.ToUpper(fake("", 16)),
		"Google API key":                     fake("AIza", 35),
		"npm":                                fake("npm_", 36),
		"Hugging Face":                       fake("hf_", 34),
		"PyPI":                               fake("pypi-AgEIcHlwaS5vcmc", 40),
		"PEM private key":                    "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...",
		"URL with a password":                "postgres://app:" + fake("", 10) + "@db.internal:5432/app",
		"URL with a password, in a sentence": "connect to https://u:p4ss@example.com/x now",
		"in JSON inside a string":            `{"headers":{"x-token":"` + fake("ghp_", 36) + `"}}`,
	}
	for name, s := range cases {
		err := mask.Token(s)
		if !errors.Is(err, mask.ErrSecret) {
			t.Errorf("%s: %q accepted (%v)", name, s, err)
			continue
		}
		if strings.Contains(err.Error(), s) || !strings.Contains(err.Error(), "mask") {
			t.Errorf("%s: message %q", name, err)
		}
	}
}

// TestSecret_OrdinaryAccepted: digests, UUIDs, ids, node ids, paths, URLs
// and base64 of ordinary text are not secrets.
func TestSecret_OrdinaryAccepted(t *testing.T) {
	sum := sha256.Sum256([]byte("policy"))
	sum512 := sha512.Sum512([]byte("policy"))
	cases := []string{
		hex.EncodeToString(sum[:]), b64(sum[:]), b64url(sum[:]), b64(sum512[:]), "sha256:" + hex.EncodeToString(sum[:]),
		"123e4567-e89b-12d3-a456-426614174000", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"e3b0c44298fc1c149afbf4c8996fb92427ae41e4", // a git commit
		b64("Hello, this is ordinary text in base64."), b64url("report for 2026-10, all teams"),
		b64(`{"offset":100,"limit":50}`),   // a pagination cursor
		"MDQ6VXNlcjU4MzIzMQ==", "VXNlcjox", // GraphQL node ids: base64 of 04:User583231, User:1
		"QWdlbnQ6YmlsbGluZy1ib3Q=", // base64 of Agent:billing-bot: not after "Basic "
		"Basic auth is disabled on this endpoint", "Basic " + b64("no colon here"),
		"/usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6", "https://user@example.com/path", "https://example.com:8443/a?b=c",
		"mailto:alice@example.com", "ghp_short", "risk-assessment-for-the-quarterly-report-of-2026",
		"task-" + strings.Repeat("a", 40), "sk-learn", "AKIAlowercase" + strings.Repeat("x", 16),
		"ASIA-PACIFIC-REGION-2026-Q4", "a-very-long-kubernetes-deployment-name-7d9f8b6c5-x2x9z",
		"select * from invoices where id = 'INV-2026-000123'", "2026-11-30T07:05:00.123456789Z",
		"Summarise the open incidents for the platform team and draft a status update for the channel.",
	}
	for _, s := range cases {
		if err := mask.Token(s); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
}

// TestSecret_OneLayer: decoding stops after one layer, as documented.
func TestSecret_OneLayer(t *testing.T) {
	if err := mask.Token(b64(b64("token:" + fake("", 16)))); err != nil {
		t.Errorf("two layers of base64 decoded: %v", err)
	}
}

// FuzzToken: Token's one pass finds every raw token RawToken's regexps
// find (it only picks the candidates for them), and never panics.
func FuzzToken(f *testing.F) {
	for _, s := range []string{jwt, "Bearer " + jwt, "x-bearer:abcdefghijklmnopqrstu", "\u200bBearer a b", "token=" + jwt,
		b64("token:secret-value"), "Basic " + b64("a:b"), "https://u:p@h/", "eyJ" + jwt, "ab+bearer\tqqqqqqqqqqqqqqqqqqqq"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := mask.Token(s)
		if mask.RawToken(s) != nil && !errors.Is(err, mask.ErrRawToken) {
			t.Fatalf("%q: RawToken refuses it, Token says %v", s, err)
		}
	})
}

// TestSecret_RefusedInUnicodeTextAndSpacedBasic: text is UTF-8, not only
// ASCII. Base64 or hex of a config holding a name with an accent, or of a
// note with a check mark, hid the credential in it; so did HTTP Basic with
// more than one space or a tab after "Basic" (RFC 9110: 1*SP; agents
// paste headers as they find them).
func TestSecret_RefusedInUnicodeTextAndSpacedBasic(t *testing.T) {
	cases := map[string]string{
		"base64 of JSON with an accent":    b64(`{"user":"José","password":"` + fake("", 14) + `"}`),
		"base64 of a note with a ✓":        b64("✓ deployed, token: " + fake("ghp_", 36)),
		"URL-safe base64, accented":        b64url("Müller api_key=" + fake("", 20)),
		"hex of text with an accent":       hex.EncodeToString([]byte("José password=" + fake("", 12))),
		"base64 of CJK text and a secret":  b64("密码 password=" + fake("", 12)),
		"Basic, three spaces":              "basic   " + b64("alice:"+fake("", 8)),
		"Basic, a tab":                     "Basic\t" + b64("alice:"+fake("", 8)),
		"Authorization header, two spaces": "Authorization: Basic  " + b64("svc:"+fake("", 12)),
	}
	for name, s := range cases {
		if err := mask.Token(s); !errors.Is(err, mask.ErrSecret) {
			t.Errorf("%s: %q accepted (%v)", name, s, err)
		}
	}
	// Still not text: bytes that are not UTF-8, and UTF-8 of ordinary words.
	for _, s := range []string{
		b64("\x00\x01" + fake("ghp_", 36)), b64("\xff\xfe token: " + fake("", 12)),
		b64("Grüße aus München, alles gut"), hex.EncodeToString([]byte("naïve café ✓ done")),
	} {
		if err := mask.Token(s); err != nil {
			t.Errorf("%q refused: %v", s, err)
		}
	}
}
