package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/mcpproxy"
	"github.com/agentpdp/agentpdp/pdp/wire"
)

// mcpProxyCmd is agentpdp mcp-proxy: an MCP server behind the daemon.
type mcpProxyCmd struct {
	streams
	principal, socket, adminSocket, approver, config, server, logLevel string
	filter                                                             bool
	maxLine, maxDepth                                                  int
	args                                                               []string // the MCP server's command and its arguments
}

func newMCPProxyCmd() *cobra.Command {
	c := &mcpProxyCmd{}
	cmd := &cobra.Command{
		Use:   "mcp-proxy --principal UID [--socket PATH] -- SERVER_COMMAND…",
		Short: "Run an MCP server behind agentpdp: every tools/call is authorized, its outcome recorded",
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 || len(args) == 0 {
				return usagef("mcp-proxy: give the MCP server's command after --")
			}
			return nil
		},
		RunE: runE(c, &c.args),
	}
	fl := cmd.Flags()
	fl.StringVar(&c.principal, "principal", "", `who calls the tools, as a Cedar entity: Agent::"id"`)
	fl.StringVar(&c.socket, "socket", "", "agentpdp's decision socket (default: the config's, ./var/agentpdp.sock)")
	fl.StringVar(&c.config, "config", "", "read the socket from this agentpdp config `file`")
	fl.StringVar(&c.adminSocket, "admin-socket", "", "agentpdp's admin socket: ask the user to approve step-ups through MCP elicitation, when the client supports it")
	fl.StringVar(&c.approver, "approver", "the MCP client's user", "who approvals answered through the MCP client are recorded as")
	fl.StringVar(&c.server, "server-resource", "", `the resource every call is on (default MCPServer::"<command name>")`)
	fl.BoolVar(&c.filter, "filter-tools", false, "hide from tools/list the tools the principal is denied")
	fl.StringVar(&c.logLevel, "log-level", "warn", "debug, info, warn or error")
	fl.IntVar(&c.maxLine, "max-line-bytes", mcpproxy.DefaultMaxLineBytes, "longest message relayed either way; a longer one gets a JSON-RPC error for its id")
	fl.IntVar(&c.maxDepth, "max-depth", mcpproxy.DefaultMaxDepth, "deepest nesting of a message's JSON")
	return cmd
}

func (c *mcpProxyCmd) Run(ctx context.Context) error {
	if c.principal == "" {
		return usagef("mcp-proxy: --principal is required, e.g. 'Agent::\"billing-bot\"'")
	}
	who, err := wire.ParseEntityRef(c.principal)
	if err != nil {
		return usagef("mcp-proxy: --principal: %v", err)
	}
	if c.maxLine <= 0 || c.maxDepth <= 0 {
		return usagef("mcp-proxy: --max-line-bytes and --max-depth must be positive")
	}
	if c.server == "" {
		c.server = fmt.Sprintf("MCPServer::%q", filepath.Base(c.args[0]))
	}
	resource, err := wire.ParseEntityRef(c.server)
	if err != nil {
		return usagef("mcp-proxy: --server-resource: %v", err)
	}
	if c.socket == "" {
		cfg := DefaultConfig()
		if c.config != "" {
			if cfg, err = loadValidConfig(c.config); err != nil {
				return err
			}
		}
		c.socket = cfg.Socket
	}
	proxy := &mcpproxy.Proxy{
		Client:       client.New(c.socket),
		Principal:    who,
		Server:       resource,
		FilterTools:  c.filter,
		MaxLineBytes: c.maxLine,
		MaxDepth:     c.maxDepth,
		// stdout is the MCP stream; the proxy's own log goes to stderr.
		Logger: newLogger(c.stderr, c.logLevel, "text").With("component", "mcp-proxy"),
	}
	if c.adminSocket != "" {
		proxy.Admin, proxy.Approver = client.New(c.adminSocket), c.approver
	}
	return c.runServer(ctx, proxy)
}

// runServer starts the MCP server and runs proxy between it and stdio.
func (c *mcpProxyCmd) runServer(ctx context.Context, proxy *mcpproxy.Proxy) error {
	args := c.args
	server := exec.CommandContext(ctx, args[0], args[1:]...)
	server.Stderr = c.stderr
	in, err := server.StdinPipe()
	if err != nil {
		return err
	}
	out, err := server.StdoutPipe()
	if err != nil {
		return err
	}
	if err := server.Start(); err != nil {
		return fmt.Errorf("mcp-proxy: start %s: %w", args[0], err)
	}
	perr := proxy.Run(ctx, c.stdin, c.stdout, in, out)
	werr := server.Wait()
	if perr != nil {
		return perr
	}
	if werr != nil && ctx.Err() == nil {
		return fmt.Errorf("mcp-proxy: %s: %w", args[0], werr)
	}
	return nil
}
