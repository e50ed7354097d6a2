package sink

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/agentpdp/agentpdp/plugins"
)

// FileSink appends rows as JSON lines to a file, rotating it by size. A
// batch is acknowledged once it is written and synced.
type FileSink struct {
	name     string
	path     string
	maxBytes int64

	mu   sync.Mutex
	f    *os.File
	size int64
}

// NewFileSink opens (or creates, mode 0600) path for appending.
func NewFileSink(name, path string, maxBytes int64) (*FileSink, error) {
	if path == "" {
		return nil, fmt.Errorf("sink %s: path is required", name)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("sink %s: %w", name, err)
	}
	s := &FileSink{name: name, path: path, maxBytes: maxBytes}
	if err := s.open(); err != nil {
		return nil, fmt.Errorf("sink %s: %w", name, err)
	}
	return s, nil
}

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.size = f, st.Size()
	return nil
}

// Name is the sink's name.
func (s *FileSink) Name() string { return s.name }

// Ship writes the batch and syncs it.
func (s *FileSink) Ship(_ context.Context, b *plugins.Batch) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.maxBytes > 0 && s.size > 0 && s.size >= s.maxBytes {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	for _, r := range b.Rows {
		buf.Write(r)
		buf.WriteByte('\n')
	}
	n, err := s.f.Write(buf.Bytes())
	s.size += int64(n)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	return nil
}

// rotate renames the file aside with a timestamp and starts a new one.
func (s *FileSink) rotate() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	aside := fmt.Sprintf("%s.%s", s.path, time.Now().UTC().Format("20060102T150405.000000000"))
	if err := os.Rename(s.path, aside); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if err := s.open(); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	return nil
}

// Close closes the file.
func (s *FileSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}
