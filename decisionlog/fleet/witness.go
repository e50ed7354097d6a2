package fleet

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	flog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Algorithm bytes of C2SP signed-note keys.
const (
	algEd25519     = 0x01 // a log's own checkpoint signature
	algCosignature = 0x04 // cosignature/v1 (c2sp.org/tlog-cosignature)
)

// Witness cosigns checkpoints with the collector's Ed25519 key, as C2SP
// tlog-cosignature (cosignature/v1, with a timestamp) specifies: the
// signature line is "— <name> base64(key hash || timestamp || signature)",
// over "cosignature/v1\ntime <unix seconds>\n" and the checkpoint body.
type Witness struct {
	name   string
	pub    ed25519.PublicKey
	signer note.Signer
}

// NewWitness makes a witness named name (the signature line's key name) from
// the collector's key.
func NewWitness(name string, key ed25519.PrivateKey) (*Witness, error) {
	if !validKeyName(name) {
		return nil, fmt.Errorf("witness name %q: want a non-empty name without spaces or '+'", name)
	}
	pub := key.Public().(ed25519.PublicKey)
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, keyHash(name, algCosignature, pub),
		base64.StdEncoding.EncodeToString(append([]byte{algCosignature}, key.Seed()...)))
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, fmt.Errorf("witness key: %w", err)
	}
	return &Witness{name: name, pub: pub, signer: s}, nil
}

// Name is the witness's key name.
func (w *Witness) Name() string { return w.name }

// PublicKey is the key cosignatures verify with.
func (w *Witness) PublicKey() ed25519.PublicKey { return w.pub }

// Cosign adds the witness's cosignature to a checkpoint: text is the body
// alone, or a note already signed by the log (its signatures are kept).
func (w *Witness) Cosign(text []byte) ([]byte, error) {
	body, sigs := splitNote(text)
	sig, err := w.signer.Sign(body)
	if err != nil {
		return nil, fmt.Errorf("cosign: %w", err)
	}
	var out bytes.Buffer
	out.Write(body)
	out.WriteByte('\n')
	out.Write(sigs)
	h := make([]byte, 4, 4+len(sig))
	binary.BigEndian.PutUint32(h, w.signer.KeyHash())
	fmt.Fprintf(&out, "— %s %s\n", w.name, base64.StdEncoding.EncodeToString(append(h, sig...)))
	return out.Bytes(), nil
}

// splitNote splits a signed note into its body and its signature lines
// (each ending in a newline); text without signatures is all body.
func splitNote(text []byte) (body, sigs []byte) {
	if i := bytes.LastIndex(text, []byte("\n\n")); i >= 0 && bytes.HasPrefix(text[i+2:], []byte("— ")) {
		return text[:i+1], text[i+2:]
	}
	return text, nil
}

// Cosigned is a checkpoint whose witness cosignature verified.
type Cosigned struct {
	flog.Checkpoint
	Witness  string    // the cosignature's key name
	CosignAt time.Time // the cosignature's timestamp
}

// VerifyCosigned checks that text, a signed note, carries a cosignature/v1
// signature by the witness key pub (under any key name), and returns the
// checkpoint it cosigns. A note without one fails.
func VerifyCosigned(text []byte, pub ed25519.PublicKey) (*Cosigned, error) {
	var names []string
	for line := range strings.SplitSeq(string(text), "\n") {
		if name, _, ok := strings.Cut(strings.TrimPrefix(line, "— "), " "); ok && strings.HasPrefix(line, "— ") {
			names = append(names, name)
		}
	}
	var vs []note.Verifier
	for _, name := range names {
		if !validKeyName(name) {
			continue
		}
		vkey := fmt.Sprintf("%s+%08x+%s", name, keyHash(name, algCosignature, pub), base64.StdEncoding.EncodeToString(append([]byte{algCosignature}, pub...)))
		v, err := fnote.NewVerifierForCosignatureV1(vkey)
		if err != nil {
			return nil, fmt.Errorf("witness key: %w", err)
		}
		vs = append(vs, v)
	}
	if len(vs) == 0 {
		return nil, errors.New("cosigned checkpoint: no signature line")
	}
	n, err := note.Open(text, note.VerifierList(vs...))
	if err != nil {
		return nil, fmt.Errorf("cosigned checkpoint: no cosignature by the witness key verifies: %w", err)
	}
	c := &Cosigned{Witness: n.Sigs[0].Name}
	if _, err := c.Checkpoint.Unmarshal([]byte(n.Text)); err != nil {
		return nil, fmt.Errorf("cosigned checkpoint: %w", err)
	}
	if c.CosignAt, err = fnote.CoSigV1Timestamp(n.Sigs[0]); err != nil {
		return nil, fmt.Errorf("cosigned checkpoint: %w", err)
	}
	return c, nil
}

// keyHash is a signed-note key hash: the first four bytes of
// SHA-256(name || "\n" || algorithm || public key).
func keyHash(name string, alg byte, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', alg})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func validKeyName(name string) bool {
	return name != "" && !strings.ContainsAny(name, " \t\n+")
}

// hostNoteVerifier is a verifier of a host's own checkpoint note signature
// (Ed25519, algorithm 0x01) under key name, with the origin's public key.
func hostNoteVerifier(name string, pub ed25519.PublicKey) (note.Verifier, error) {
	return note.NewVerifier(fmt.Sprintf("%s+%08x+%s", name, keyHash(name, algEd25519, pub), base64.StdEncoding.EncodeToString(append([]byte{algEd25519}, pub...))))
}

// FetchWitnessed asks a collector at base (https://collector:8443; a URL
// ending in /v1/ingest is taken as its base) for the newest checkpoint it
// cosigned for origin. The caller checks the cosignature.
func FetchWitnessed(ctx context.Context, client *http.Client, base, origin string) ([]byte, error) {
	base = strings.TrimSuffix(strings.TrimSuffix(base, "/"), "/v1/ingest")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/witness/"+url.PathEscape(origin), nil)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("witness %s: %s: %s", base, resp.Status, bytes.TrimSpace(b))
	}
	return b, nil
}
