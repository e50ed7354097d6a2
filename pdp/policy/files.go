package policy

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"
	"syscall"
)

// MaxFileBytes is the most a policy, schema or entities file may hold.
const MaxFileBytes = 64 << 20

// ReadTree reads every policy, schema and entities file under the
// directory root (resolved once by the caller), calling fn with each
// file's slash-separated path relative to root and its content, in lexical
// order. Entries whose name starts with a dot below root are skipped.
//
// It is the one way the loader and the reload digest read a policy tree,
// and it reads only what is safe to read: a file must be a regular file,
// checked by name before it is opened, so a FIFO, device or socket named
// x.cedar is refused and never opened for reading (a FIFO would block the
// reader, and with it reload and shutdown, for good); a symlinked file is
// followed only while it stays inside root (os.Root), so a link to a
// secret elsewhere is refused, not read; a symlinked directory is not
// followed. The file is opened non-blocking and checked again once open,
// in case it was swapped in between.
func ReadTree(root string, fn func(rel string, content []byte) error) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer r.Close()
	return walkPolicyFiles(r.FS(), func(p string) error {
		b, err := readRegular(r, p)
		if err != nil {
			return err
		}
		return fn(p, b)
	})
}

// walkPolicyFiles calls fn with the slash-separated path of every policy,
// schema and entities file in fsys, in lexical order, skipping entries
// whose name starts with a dot (and the directories they name). It is the
// one choice of which files make up a policy tree, for ReadTree and LoadFS.
func walkPolicyFiles(fsys fs.FS, fn func(p string) error) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if p != "." && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !isPolicyDirFile(name) {
			return nil
		}
		return fn(p)
	})
}

// readRegular reads the regular file p inside r.
func readRegular(r *os.Root, p string) ([]byte, error) {
	st, err := r.Stat(p) // follows a link, but only within r
	if err != nil {
		if strings.Contains(err.Error(), "escapes") || errors.Is(err, os.ErrPermission) && isLink(r, p) {
			return nil, fmt.Errorf("%s: a symlink out of the policy directory: not followed", p)
		}
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s): refused without reading it", p, kind(st.Mode()))
	}
	f, err := r.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file: refused", p)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d MiB", p, MaxFileBytes>>20)
	}
	return b, nil
}

func isLink(r *os.Root, p string) bool {
	st, err := r.Lstat(p)
	return err == nil && st.Mode()&fs.ModeSymlink != 0
}

func kind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	}
	return m.Type().String()
}

// Parse errors quote the file they failed on ("unexpected effect: TOKEN",
// got identifier "TOKEN"); a policy file may be a link to, or a copy of,
// something secret, and problems are shown on /v1/status and in the
// daemon's log. redactParse keeps the position and the parser's words and
// drops every piece of the file.
var (
	quotedToken     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	unexpectedToken = regexp.MustCompile(`(unexpected [a-z ]+): .*$`)
	gotToken        = regexp.MustCompile(`\bgot ([a-z]+ )?[^,;]*`)
)

func redactParse(msg string) string {
	msg = quotedToken.ReplaceAllString(msg, "")
	msg = unexpectedToken.ReplaceAllString(msg, "$1")
	msg = gotToken.ReplaceAllString(msg, "got ${1}(not shown)")
	return strings.Join(strings.Fields(msg), " ") + " (the file's content is not shown)"
}
