package console

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// The accounts file holds one approver a line, "name:hash", where hash is an
// argon2id string in the PHC format that the reference implementation and
// libsodium write ($argon2id$v=19$m=65536,t=3,p=2$salt$key, base64 without
// padding), or a bcrypt hash ($2a$, $2b$, $2y$). Blank lines and lines
// starting with # are ignored.

// Argon2id parameters for new hashes: RFC 9106 §4's second recommended
// option (64 MiB, 3 passes), with the lanes this two-core host has.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024 // KiB
	argonThreads = 2
	argonKeyLen  = 32
	saltLen      = 16
)

// MinPasswordLen is the shortest password AddUser accepts.
const MinPasswordLen = 12

var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$`)

// ValidUserName reports whether name can be an account: 1 to 64 letters,
// digits and . _ @ + -, starting with a letter or digit. The name is what
// the log records as the approver, so it is kept plain.
func ValidUserName(name string) error {
	if !validName.MatchString(name) {
		return fmt.Errorf("user name %q: want 1 to 64 letters, digits and . _ @ + -, starting with a letter or digit", name)
	}
	return nil
}

// HashPassword returns an argon2id hash of password in the PHC format.
func HashPassword(password string) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// errBadHash is a hash this package cannot read: the account cannot sign in.
var errBadHash = errors.New("unreadable password hash")

// checkPassword reports whether password matches hash (argon2id or bcrypt),
// in time that does not depend on where they differ.
func checkPassword(hash, password string) (bool, error) {
	switch {
	case strings.HasPrefix(hash, "$argon2id$"):
		var v int
		var m uint32
		var t uint32
		var p uint8
		parts := strings.Split(hash, "$")
		if len(parts) != 6 {
			return false, errBadHash
		}
		if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
			return false, errBadHash
		}
		if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 4*1024*1024 || t > 100 {
			return false, errBadHash
		}
		salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
		key, err2 := base64.RawStdEncoding.DecodeString(parts[5])
		if err1 != nil || err2 != nil || len(key) < 16 || len(key) > 128 {
			return false, errBadHash
		}
		got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(key)))
		return subtle.ConstantTimeCompare(got, key) == 1, nil
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		if err != nil {
			return false, errBadHash
		}
		return true, nil
	}
	return false, errBadHash
}

// dummyHash is checked against when the name is unknown, so that the time
// of an answer does not say which names exist.
// It is made on first use, not at start: every agentpdp command links
// this package.
var dummyHash = sync.OnceValue(func() string {
	h, err := HashPassword("agentpdp console: no such account")
	if err != nil {
		return "$argon2id$v=19$m=65536,t=3,p=2$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	}
	return h
})

// readUsers reads the accounts file: name → hash. A malformed line is an
// error naming it: an accounts file that does not say what it means signs
// nobody in.
func readUsers(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	users := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok || ValidUserName(name) != nil || !strings.HasPrefix(hash, "$") {
			return nil, fmt.Errorf("read accounts: %s:%d: want name:hash", path, n)
		}
		if _, dup := users[name]; dup {
			return nil, fmt.Errorf("read accounts: %s:%d: %s appears twice", path, n, name)
		}
		users[name] = hash
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	return users, nil
}

// AddUser sets name's password in the accounts file at path, creating the
// file (0600) if needed and replacing name's line if it exists. The file is
// replaced whole (written beside it, then renamed), so a crash leaves the
// old file or the new one.
func AddUser(path, name, password string) error {
	if err := ValidUserName(name); err != nil {
		return err
	}
	if len(password) < MinPasswordLen {
		return fmt.Errorf("password: at least %d characters", MinPasswordLen)
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	var lines []string
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return fmt.Errorf("add user: %w", err)
	default:
		if _, err := readUsers(path); err != nil {
			return fmt.Errorf("add user: %w", err)
		}
		for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			if n, _, _ := strings.Cut(strings.TrimSpace(l), ":"); n == name {
				continue
			}
			lines = append(lines, l)
		}
	}
	lines = append(lines, name+":"+hash)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".users-*")
	if err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("add user: %w", err)
	}
	if _, err := tmp.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		tmp.Close()
		return fmt.Errorf("add user: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("add user: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("add user: %w", err)
	}
	return nil
}
