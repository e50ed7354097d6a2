package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/agentpdp/agentpdp/pdp/wire"

	"github.com/goccy/go-yaml"

	"github.com/agentpdp/agentpdp/pdp/identity"

	"github.com/agentpdp/agentpdp/plugins/sink"
)

// Config is agentpdp.yaml. Every key has a default, so that serve with no
// file serves ./policies into ./var/decisions.db.
type Config struct {
	Policies     string   `yaml:"policies"`
	Shadow       string   `yaml:"shadow_policies"` // a candidate directory evaluated beside policies, never answered
	DB           string   `yaml:"db"`
	Socket       string   `yaml:"socket"`
	AdminSocket  string   `yaml:"admin_socket"`
	Durability   string   `yaml:"durability"`  // full | normal
	OnError      string   `yaml:"on_error"`    // deny | skip
	Prompt       string   `yaml:"prompt"`      // hmac | store | drop
	HMACKey      string   `yaml:"hmac_key"`    // file with the key for prompt, mask and context HMACs; created if missing
	Mask         []string `yaml:"mask"`        // JSON pointers into requests, masked before logging
	MaskAction   string   `yaml:"mask_action"` // hmac | remove
	SigningKey   string   `yaml:"signing_key"` // Ed25519 key for checkpoints; created if missing; "" disables signing
	Origin       string   `yaml:"origin"`      // the log's origin in rows and checkpoints; default a random id, kept in the database
	MaxBodyBytes int64    `yaml:"max_body_bytes"`
	// MaxJSONDepth is how deep a request's objects and arrays may nest,
	// counted from the request object; deeper input is refused while it is
	// decoded.
	MaxJSONDepth int `yaml:"max_json_depth"`
	// GCPercent is the Go garbage collector's target (GOGC). A decision
	// allocates its request and record once; collecting less often buys
	// about a quarter more decisions per CPU for a few tens of MB.
	GCPercent int `yaml:"gc_percent"`
	Approvals struct {
		TTL       time.Duration `yaml:"ttl"`
		SingleUse bool          `yaml:"single_use"`
	} `yaml:"approvals"`
	Checkpoints struct {
		EveryRows int           `yaml:"every_rows"`
		Every     time.Duration `yaml:"every"`
	} `yaml:"checkpoints"`
	Sinks           []sink.Config    `yaml:"sinks"`
	EntityProviders []ProviderConfig `yaml:"entity_providers"`
	// The trust boundary (DESIGN.md, "Evidence, not claims").
	RequestEntities  string           `yaml:"request_entities"`  // refuse | unknown_only | trusted
	UnknownPrincipal string           `yaml:"unknown_principal"` // deny | allow
	Identity         identity.Config  `yaml:"identity"`
	Callers          identity.Callers `yaml:"callers"`
	Retention        struct {
		MaxAge  time.Duration `yaml:"max_age"`  // delete rows older than this; 0 keeps them
		MaxRows int64         `yaml:"max_rows"` // keep at most about this many; 0 no limit
		Every   time.Duration `yaml:"every"`    // how often serve prunes; default 10m
	} `yaml:"retention"`
	Reload struct {
		Debounce time.Duration `yaml:"debounce"` // quiet time after the last policy-file change
		MaxWait  time.Duration `yaml:"max_wait"` // past it, reload once the tree reads the same twice
	} `yaml:"reload"`
	Commit struct {
		MaxBatch  int           `yaml:"max_batch"`
		MaxWait   time.Duration `yaml:"max_wait"`
		GroupWait time.Duration `yaml:"group_wait"` // negative: never
		GroupMin  int           `yaml:"group_min"`
	} `yaml:"commit"`
	Log struct {
		Level  string `yaml:"level"`  // debug | info | warn | error
		Format string `yaml:"format"` // text | json
	} `yaml:"log"`
}

// ProviderConfig is an entity-provider plugin.
type ProviderConfig struct {
	Name     string        `yaml:"name"`
	Command  string        `yaml:"command"`
	Args     []string      `yaml:"args"`
	Checksum string        `yaml:"checksum"`  // hex SHA-256 of the binary, checked before it runs
	Timeout  time.Duration `yaml:"timeout"`   // per request; default 50ms; past it the request is denied
	CacheTTL time.Duration `yaml:"cache_ttl"` // answers cached per principal and resource; default 0 (none)
}

// DefaultConfig is the configuration with no file.
func DefaultConfig() Config {
	var c Config
	c.Policies = "./policies"
	c.DB = "./var/decisions.db"
	c.Socket = "./var/agentpdp.sock"
	c.AdminSocket = "./var/agentpdp-admin.sock"
	c.Durability = "full"
	c.OnError = "deny"
	c.Prompt = "hmac"
	c.HMACKey = "./var/hmac.key"
	c.MaskAction = "hmac"
	c.SigningKey = "./var/signing.key"
	c.Approvals.TTL = 15 * time.Minute
	c.Approvals.SingleUse = true
	c.Checkpoints.EveryRows = 1000
	c.Checkpoints.Every = time.Minute
	c.Retention.Every = 10 * time.Minute
	c.MaxBodyBytes = 16 << 20 // MCP tool arguments of up to 10 MiB, with room for the rest of the request
	c.MaxJSONDepth = wire.DefaultMaxDepth
	c.GCPercent = 800
	c.Reload.Debounce = 100 * time.Millisecond
	c.Reload.MaxWait = 30 * time.Second
	c.Commit.MaxBatch = 512
	c.Commit.GroupWait = time.Millisecond
	c.Commit.GroupMin = 8
	c.Log.Level = "info"
	c.Log.Format = "text"
	c.RequestEntities = "unknown_only"
	c.UnknownPrincipal = "deny"
	return c
}

// LoadConfig reads path over the defaults. Unknown keys are errors that name
// them. Every error is a configError (exit 2).
func LoadConfig(path string) (Config, error) {
	c := DefaultConfig()
	return c, decodeConfigFile(path, "config", &c)
}

// configError is a configuration file that cannot be read or parsed, or
// holds a wrong key or value (unknown, of the wrong type, outside its
// choices, missing where required). It is a usage error, exit 2, like a bad
// flag: the file is part of how the command was called (flags override
// it), nothing was run, and running again unchanged fails the same way (so
// a service manager can stop restarting, with RestartPreventExitStatus=2).
// A configuration that is valid but names something that fails when it is
// opened (a database, a socket, a key file, a plugin, a receiver) exits 1.
type configError struct{ err error }

func (e configError) Error() string { return e.err.Error() }
func (e configError) Unwrap() error { return e.err }

// asConfigError marks err, if any, as a configError.
func asConfigError(err error) error {
	if err == nil {
		return nil
	}
	return configError{err}
}

// decodeConfigFile reads the YAML file at path into into, which holds the
// defaults: first the file's shape is checked against into's type, in the
// file's own terms (the YAML library's errors name Go types and fields),
// then it is decoded with unknown keys refused. what begins every message
// ("config", "collector config"). Errors are configErrors.
func decodeConfigFile[T any](path, what string, into *T) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return configError{fmt.Errorf("%s %s: no such file; give the path of an existing YAML configuration file", what, path)}
	}
	if err != nil {
		return configError{fmt.Errorf("%s: %w", what, err)}
	}
	var top map[string]any
	if err := yaml.Unmarshal(b, &top); err != nil {
		return configError{fmt.Errorf("%s %s: %s", what, path, yaml.FormatError(err, false, true))}
	}
	if errs := checkShape("", top, reflect.TypeFor[T]()); len(errs) > 0 {
		return configError{fmt.Errorf("%s %s: %s", what, path, strings.Join(errs, "; "))}
	}
	if err := yaml.NewDecoder(bytes.NewReader(b), yaml.DisallowUnknownField()).Decode(into); err != nil && !errors.Is(err, io.EOF) {
		return configError{fmt.Errorf("%s %s: %s", what, path, yaml.FormatError(err, false, true))}
	}
	return nil
}

// The daemon's own log settings, shared by every command's configuration.
var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"text", "json"}
)

// loadValidConfig is LoadConfig then Validate: the configuration of a
// command that takes the file as it is, without flags over it.
func loadValidConfig(path string) (Config, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.validateFile(path)
}

// Validate checks values, naming the key at fault.
func (c Config) Validate() error { return c.validateFile("") }

// validateFile is Validate for a configuration read from path, which every
// message names ("config agentpdp.yaml: durability: …"), as the file's own
// type errors do; with no path, the message begins "config:".
func (c Config) validateFile(path string) error {
	return configProblems("config", path, c.problems())
}

// configProblems is the error for a configuration's problems, nil if there
// are none: "what path: problem; problem", or "what: …" without a path.
func configProblems(what, path string, problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	if path != "" {
		what += " " + path
	}
	return configError{fmt.Errorf("%s: %s", what, strings.Join(problems, "; "))}
}

// problems lists what is wrong with c's values, each naming its key.
func (c Config) problems() []string {
	var errs []string
	oneOf := func(key, v string, allowed ...string) {
		if !slices.Contains(allowed, v) {
			errs = append(errs, fmt.Sprintf("%s: %q, want one of %s", key, v, strings.Join(allowed, ", ")))
		}
	}
	nonEmpty := func(key, v string) {
		if v == "" {
			errs = append(errs, key+": must not be empty")
		}
	}
	nonEmpty("policies", c.Policies)
	nonEmpty("db", c.DB)
	nonEmpty("socket", c.Socket)
	nonEmpty("admin_socket", c.AdminSocket)
	if c.Shadow != "" && c.Shadow == c.Policies {
		errs = append(errs, "shadow_policies: must differ from policies")
	}
	if c.Socket != "" && c.Socket == c.AdminSocket {
		errs = append(errs, "admin_socket: must differ from socket, or agents could read the log")
	}
	oneOf("durability", c.Durability, "full", "normal")
	oneOf("on_error", c.OnError, "deny", "skip")
	oneOf("prompt", c.Prompt, "hmac", "store", "drop")
	nonEmpty("hmac_key", c.HMACKey)
	oneOf("mask_action", c.MaskAction, "hmac", "remove")
	if c.Approvals.TTL <= 0 {
		errs = append(errs, "approvals.ttl: must be positive")
	}
	if c.Checkpoints.EveryRows <= 0 || c.Checkpoints.Every <= 0 {
		errs = append(errs, "checkpoints.every_rows and checkpoints.every: must be positive")
	}
	oneOf("request_entities", c.RequestEntities, "refuse", "unknown_only", "trusted")
	oneOf("unknown_principal", c.UnknownPrincipal, "deny", "allow")
	id := c.Identity // Validate fills defaults; serve validates its own copy
	if err := id.Validate(); err != nil {
		errs = append(errs, err.Error())
	}
	if err := c.Callers.Compile(); err != nil {
		errs = append(errs, err.Error())
	}
	if id.Require == identity.RequireAttested && len(c.Callers) == 0 && !id.Configured() {
		errs = append(errs, "identity.require is attested but there are no callers rules and no identity issuer")
	}
	oneOf("log.level", c.Log.Level, logLevels...)
	oneOf("log.format", c.Log.Format, logFormats...)
	names := map[string]bool{}
	for i, sc := range c.Sinks {
		switch {
		case sc.Name == "":
			errs = append(errs, fmt.Sprintf("sinks[%d].name: required", i))
		case names[sc.Name]:
			errs = append(errs, fmt.Sprintf("sinks[%d].name: %q is used twice", i, sc.Name))
		}
		names[sc.Name] = true
		if err := sink.Check(sc); err != nil && sc.Name != "" {
			errs = append(errs, fmt.Sprintf("sinks[%d]: %v", i, err))
		}
	}
	for i, p := range c.EntityProviders {
		if p.Name == "" || p.Command == "" {
			errs = append(errs, fmt.Sprintf("entity_providers[%d]: name and command are required", i))
		}
		if p.Timeout < 0 || p.CacheTTL < 0 {
			errs = append(errs, fmt.Sprintf("entity_providers[%d]: timeout and cache_ttl must not be negative", i))
		}
	}
	if c.Retention.MaxAge < 0 || c.Retention.MaxRows < 0 || c.Retention.Every <= 0 {
		errs = append(errs, "retention: max_age and max_rows must not be negative, every must be positive")
	}
	if (c.Retention.MaxAge > 0 || c.Retention.MaxRows > 0) && c.SigningKey == "" {
		errs = append(errs, "retention: needs signing_key: rows are pruned only up to a signed checkpoint, so the log stays verifiable")
	}
	if c.Origin != "" && (strings.ContainsAny(c.Origin, "+") || len(strings.Fields(c.Origin)) != 1 || strings.TrimSpace(c.Origin) != c.Origin) {
		errs = append(errs, fmt.Sprintf("origin: %q must be one word without spaces or '+' (it names the checkpoint key)", c.Origin))
	}
	if c.GCPercent <= 0 {
		errs = append(errs, "gc_percent: must be positive")
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, "max_body_bytes: must be positive")
	}
	if c.MaxJSONDepth <= 0 || c.MaxJSONDepth > 512 {
		// SQLite's JSON functions stop at 1,000 levels; a stored row nests
		// the request two levels down.
		errs = append(errs, "max_json_depth: want 1 to 512")
	}
	if c.Reload.Debounce < 0 || c.Reload.MaxWait < 0 || c.Commit.MaxWait < 0 {
		errs = append(errs, "reload.debounce, reload.max_wait and commit.max_wait: must not be negative")
	}
	if c.Commit.MaxBatch <= 0 {
		errs = append(errs, "commit.max_batch: must be positive")
	}
	if c.Commit.GroupMin <= 0 {
		errs = append(errs, "commit.group_min: must be positive")
	}
	return errs
}
