package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/agentpdp/agentpdp/decisionlog"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/console"
)

// consoleConfig is the console's YAML file (--config): the same keys as
// its flags, which override it.
type consoleConfig struct {
	Listen        string        `yaml:"listen"`
	DB            string        `yaml:"db"`
	AdminSocket   string        `yaml:"admin_socket"`
	Users         string        `yaml:"users"`
	Pubkey        string        `yaml:"pubkey"`         // checks checkpoint signatures on the integrity page
	WitnessKey    string        `yaml:"witness_key"`    // the collector's public key: checks the log's cosignature rows
	Operator      string        `yaml:"operator"`       // the account the one-time link signs in as; "" for none
	LinkTTL       time.Duration `yaml:"link_ttl"`       // how long the one-time link works
	PendingWindow time.Duration `yaml:"pending_window"` // how long a step_up waits for an answer in the console
	SessionMaxAge time.Duration `yaml:"session_max_age"`
	SessionIdle   time.Duration `yaml:"session_idle"`
	// TLSCert and TLSKey, both or neither, serve HTTPS (session cookies are
	// then Secure): needed on any address but loopback.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	Log     struct {
		Level  string `yaml:"level"`
		Format string `yaml:"format"`
	} `yaml:"log"`
}

func defaultConsoleConfig() consoleConfig {
	c := consoleConfig{
		Listen:        "127.0.0.1:8181",
		DB:            "./var/decisions.db",
		AdminSocket:   "./var/agentpdp-admin.sock",
		Users:         "./var/console-users",
		Operator:      defaultOperator(),
		LinkTTL:       15 * time.Minute,
		PendingWindow: 15 * time.Minute,
		SessionMaxAge: 12 * time.Hour,
		SessionIdle:   time.Hour,
	}
	if _, err := os.Stat("./var/signing.key.pub"); err == nil {
		c.Pubkey = "./var/signing.key.pub"
	}
	c.Log.Level, c.Log.Format = "info", "text"
	return c
}

// defaultOperator names the local operator after the account that runs the
// console and its host, as user@host.
func defaultOperator() string {
	name := "operator"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	name = regexp.MustCompile(`[^A-Za-z0-9._@+-]`).ReplaceAllString(name, "-")
	if console.ValidUserName(name) != nil {
		return "operator"
	}
	return name
}

func loadConsoleConfig(path string) (consoleConfig, error) {
	c := defaultConsoleConfig()
	return c, decodeConfigFile(path, "console config", &c)
}

func (c consoleConfig) validate() error {
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return fmt.Errorf("listen: %q: want host:port", c.Listen)
	}
	if c.DB == "" {
		return errors.New("db: required")
	}
	if c.AdminSocket == "" {
		return errors.New("admin_socket: required")
	}
	if c.Users == "" && c.Operator == "" {
		return errors.New("users: required unless operator is set: nobody could sign in")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return errors.New("tls_cert and tls_key: give both or neither")
	}
	if !slices.Contains(logLevels, c.Log.Level) {
		return fmt.Errorf("log.level: %q, want one of %s", c.Log.Level, strings.Join(logLevels, ", "))
	}
	if !slices.Contains(logFormats, c.Log.Format) {
		return fmt.Errorf("log.format: %q, want one of %s", c.Log.Format, strings.Join(logFormats, ", "))
	}
	if c.Operator != "" {
		if err := console.ValidUserName(c.Operator); err != nil {
			return fmt.Errorf("operator: %w", err)
		}
	}
	for name, d := range map[string]time.Duration{"link_ttl": c.LinkTTL, "pending_window": c.PendingWindow, "session_max_age": c.SessionMaxAge, "session_idle": c.SessionIdle} {
		if d <= 0 {
			return fmt.Errorf("%s: %s: want a positive duration", name, d)
		}
	}
	return nil
}

// consoleCmd is `agentpdp console`: the web review console.
type consoleCmd struct {
	streams
	config string
	cfg    consoleConfig
	flags  *pflag.FlagSet // to tell which flags override the file
}

func newConsoleCmd() *cobra.Command {
	c := &consoleCmd{cfg: defaultConsoleConfig()}
	cmd := &cobra.Command{
		Use:   "console [--config FILE] [--listen ADDR] [--db FILE] [--admin-socket PATH] [--users FILE]",
		Short: "Serve the web review console: step-up approvals and audit review in a browser",
		Long: `Serve the web review console on a TCP address (default 127.0.0.1:8181). It reads the
decision log read-only and records approvals through the daemon's admin socket, as the
signed-in account. At start it prints a one-time sign-in link for the local operator.`,
		Args: noArgs,
		RunE: runE(c, nil),
	}
	fl := cmd.Flags()
	c.flags = fl
	fl.StringVar(&c.config, "config", "", "console YAML `file` (listen, db, admin_socket, users, pubkey, witness_key, operator, …)")
	fl.StringVar(&c.cfg.Listen, "listen", c.cfg.Listen, "TCP `address` to serve on")
	fl.StringVar(&c.cfg.DB, "db", c.cfg.DB, "decision log `file`, opened read-only")
	fl.StringVar(&c.cfg.AdminSocket, "admin-socket", c.cfg.AdminSocket, "the daemon's admin socket `path`")
	fl.StringVar(&c.cfg.Users, "users", c.cfg.Users, "accounts `file` (agentpdp console add-user)")
	fl.StringVar(&c.cfg.Pubkey, "pubkey", c.cfg.Pubkey, "checkpoint public key `file`, to check signatures")
	fl.StringVar(&c.cfg.WitnessKey, "witness-key", c.cfg.WitnessKey, "the collector's public key `file` (witness_key's .pub), to check the log's witness cosignatures")
	fl.StringVar(&c.cfg.Operator, "operator", c.cfg.Operator, "the account the one-time sign-in link signs in as (\"\" for no link)")
	fl.StringVar(&c.cfg.TLSCert, "tls-cert", "", "serve HTTPS with this certificate `file` (PEM)")
	fl.StringVar(&c.cfg.TLSKey, "tls-key", "", "the certificate's private key `file` (PEM)")
	fl.DurationVar(&c.cfg.PendingWindow, "pending-window", c.cfg.PendingWindow, "how long a step-up waits for an answer")
	cmd.AddCommand(newConsoleAddUserCmd())
	return cmd
}

// resolve reads --config, if given, under the flags given on the command
// line: they win over the file.
func (c *consoleCmd) resolve() (consoleConfig, error) {
	if c.config == "" {
		return c.cfg, nil
	}
	cfg, err := loadConsoleConfig(c.config)
	if err != nil {
		return cfg, err
	}
	for name, dst := range map[string]*string{"listen": &cfg.Listen, "db": &cfg.DB, "admin-socket": &cfg.AdminSocket,
		"users": &cfg.Users, "pubkey": &cfg.Pubkey, "witness-key": &cfg.WitnessKey, "operator": &cfg.Operator, "tls-cert": &cfg.TLSCert, "tls-key": &cfg.TLSKey} {
		if c.flags.Changed(name) {
			*dst, _ = c.flags.GetString(name)
		}
	}
	if c.flags.Changed("pending-window") {
		cfg.PendingWindow = c.cfg.PendingWindow
	}
	return cfg, nil
}

func (c *consoleCmd) Run(ctx context.Context) error {
	cfg, err := c.resolve()
	if err != nil {
		return err
	}
	if err := cfg.validate(); err != nil {
		return usagef("console: %v", err)
	}
	logger := newLogger(c.stderr, cfg.Log.Level, cfg.Log.Format).With("component", "console")
	r, err := decisionlog.OpenReader(cfg.DB)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	defer r.Close()
	admin := client.New(cfg.AdminSocket)
	defer admin.Close()
	ccfg := console.Config{
		Reader: r, Admin: admin, UsersFile: cfg.Users, Operator: cfg.Operator,
		PendingWindow: cfg.PendingWindow, SessionMaxAge: cfg.SessionMaxAge, SessionIdle: cfg.SessionIdle,
		Logger: logger,
	}
	if cfg.Pubkey != "" {
		b, err := os.ReadFile(cfg.Pubkey)
		if err != nil {
			return fmt.Errorf("console: pubkey: %w", err)
		}
		if ccfg.PublicKey, err = decisionlog.ParsePublicKey(b); err != nil {
			return fmt.Errorf("console: pubkey %s: %w", cfg.Pubkey, err)
		}
	}
	if cfg.WitnessKey != "" {
		b, err := os.ReadFile(cfg.WitnessKey)
		if err != nil {
			return fmt.Errorf("console: witness_key: %w", err)
		}
		if ccfg.WitnessKey, err = decisionlog.ParsePublicKey(b); err != nil {
			return fmt.Errorf("console: witness_key %s: %w", cfg.WitnessKey, err)
		}
	}
	if cfg.Users != "" {
		if _, err := os.Stat(cfg.Users); err != nil {
			logger.Warn("no accounts file: only the one-time link can sign in", "users", cfg.Users, "err", err)
		}
	}
	srv, err := console.New(ccfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	base := "http://" + ln.Addr().String()
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("console: tls: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		base = "https://" + ln.Addr().String()
	} else if tcp, ok := ln.Addr().(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		logger.Warn("the console serves plain HTTP on a network address: passwords and session cookies cross the network in clear; give it tls_cert and tls_key", "addr", tcp.String())
	}
	fmt.Fprintf(c.stdout, "agentpdp console: %s\n", base)
	if link := srv.SignInLink(cfg.LinkTTL); link != "" {
		fmt.Fprintf(c.stdout, "one-time sign-in as %s (valid once, for %s): %s%s\n", cfg.Operator, cfg.LinkTTL, base, link)
	}
	return srv.Serve(ctx, ln)
}

// consoleAddUserCmd is `agentpdp console add-user NAME --users FILE`.
type consoleAddUserCmd struct {
	streams
	args  []string
	users string
}

func newConsoleAddUserCmd() *cobra.Command {
	c := &consoleAddUserCmd{}
	cmd := &cobra.Command{
		Use:   "add-user NAME --users FILE",
		Short: "Add a console account, or set its password (read from standard input when it is not a terminal)",
		Args:  oneArg("account name"),
		RunE:  runE(c, &c.args),
	}
	cmd.Flags().StringVar(&c.users, "users", "./var/console-users", "accounts `file`, created 0600 if missing")
	return cmd
}

func (c *consoleAddUserCmd) Run(ctx context.Context) error {
	name := c.args[0]
	if err := console.ValidUserName(name); err != nil {
		return usagef("console add-user: %v", err)
	}
	password, err := c.readPassword()
	if err != nil {
		return fmt.Errorf("console add-user: %w", err)
	}
	if err := console.AddUser(c.users, name, password); err != nil {
		return fmt.Errorf("console add-user: %w", err)
	}
	fmt.Fprintf(c.stderr, "account %s set in %s\n", name, c.users)
	return nil
}

// readPassword prompts twice on a terminal; otherwise it reads the first
// line of standard input (a trailing newline is not part of the password).
func (c *consoleAddUserCmd) readPassword() (string, error) {
	if f, ok := c.stdin.(*os.File); ok && isTerminal(f) {
		fmt.Fprint(c.stderr, "password: ")
		a, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", err
		}
		fmt.Fprint(c.stderr, "again: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(c.stderr)
		if err != nil {
			return "", err
		}
		if string(a) != string(b) {
			return "", errors.New("the passwords differ")
		}
		return string(a), nil
	}
	line, err := bufio.NewReader(io.LimitReader(c.stdin, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New(`no password on standard input: run it in a terminal to be asked for one, or pipe it in (echo "$PASSWORD" | agentpdp console add-user NAME --users FILE)`)
	}
	return line, nil
}
