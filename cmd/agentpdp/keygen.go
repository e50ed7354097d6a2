package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/decisionlog"
)

// keygenCmd is agentpdp keygen: a checkpoint signing key pair.
type keygenCmd struct {
	streams
	out           string
	force, asJSON bool
}

func newKeygenCmd() *cobra.Command {
	c := &keygenCmd{}
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Make an Ed25519 key pair for signing checkpoints: FILE (private, 0600) and FILE.pub",
		Args:  noArgs,
		RunE:  runE(c, nil),
	}
	cmd.Flags().StringVar(&c.out, "out", "", "private key `file`; the public key goes to FILE.pub")
	cmd.Flags().BoolVar(&c.force, "force", false, "replace existing key files")
	cmd.Flags().BoolVar(&c.asJSON, "json", false, "one JSON object")
	return cmd
}

func (c *keygenCmd) Run(ctx context.Context) error {
	if c.out == "" {
		return usagef("keygen: --out is required")
	}
	if err := writeKeyPair(c.out, c.force); err != nil {
		return err
	}
	pubPEM, err := os.ReadFile(c.out + ".pub")
	if err != nil {
		return err
	}
	pub, err := decisionlog.ParsePublicKey(pubPEM)
	if err != nil {
		return err
	}
	if c.asJSON {
		return json.NewEncoder(c.stdout).Encode(map[string]string{"private_key": c.out, "public_key": c.out + ".pub", "key_id": decisionlog.KeyID(pub)})
	}
	fmt.Fprintf(c.stdout, "wrote %s (private, keep it off the database's host if you can) and %s; key id %s\n", c.out, c.out+".pub", decisionlog.KeyID(pub))
	return nil
}

// writeKeyPair writes a new pair, never silently replacing a key: losing a
// signing key makes the checkpoints it signed unverifiable.
func writeKeyPair(path string, force bool) error {
	priv, pub, err := decisionlog.GenerateKey()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return fmt.Errorf("keygen: %w", err)
	}
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
		data []byte
	}{{path, 0o600, priv}, {path + ".pub", 0o644, pub}} {
		file, err := os.OpenFile(f.path, flags, f.mode)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("keygen: %s exists; use --force to replace it", f.path)
		}
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		if _, err := file.Write(f.data); err != nil {
			file.Close()
			return fmt.Errorf("keygen: write %s: %w", f.path, err)
		}
		if err := file.Close(); err != nil {
			return fmt.Errorf("keygen: write %s: %w", f.path, err)
		}
	}
	return nil
}
