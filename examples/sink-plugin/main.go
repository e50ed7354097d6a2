// Command sink-plugin is an example agentpdp sink plugin: it appends every
// row it is given to a JSONL file (the first argument), and acknowledges a
// batch once it is written and synced. Build it with `make examples` and
// wire it in the config:
//
//	sinks:
//	  - {name: custom, type: plugin, command: ./bin/sink-plugin, args: [./var/plugin-sink.jsonl]}
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"

	"github.com/agentpdp/agentpdp/plugins"
)

type fileSink struct{ path string }

func (s *fileSink) Name() string { return "example-sink-plugin" }
func (s *fileSink) Close() error { return nil }

func (s *fileSink) Ship(_ context.Context, b *plugins.Batch) error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err // retried by agentpdp
	}
	defer f.Close()
	var buf bytes.Buffer
	for _, r := range b.Rows {
		buf.Write(r)
		buf.WriteByte('\n')
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		return err
	}
	return f.Sync()
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: sink-plugin FILE (run by agentpdp, not by hand)")
		os.Exit(2)
	}
	plugins.ServeSink(&fileSink{path: os.Args[1]})
}
