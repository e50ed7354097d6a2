package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/agentpdp/agentpdp/pdp"
	"github.com/agentpdp/agentpdp/pdp/client"
	"github.com/agentpdp/agentpdp/pdp/mcpproxy"
)

func newMCPProxyCmd() *cobra.Command {
	var principal, socket, adminSocket, approver, config, server, logLevel string
	var filter bool
	cmd := &cobra.Command{
		Use:   "mcp-proxy --principal UID [--socket PATH] -- SERVER_COMMAND…",
		Short: "Run an MCP server behind agentpdp: every tools/call is authorized, its outcome recorded",
		Args: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 || len(args) == 0 {
				return usagef("mcp-proxy: give the MCP server's command after --")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if principal == "" {
				return usagef("mcp-proxy: --principal is required, e.g. 'Agent::\"billing-bot\"'")
			}
			who, err := pdp.ParseEntityRef(principal)
			if err != nil {
				return usagef("mcp-proxy: --principal: %v", err)
			}
			if server == "" {
				server = fmt.Sprintf("MCPServer::%q", filepath.Base(args[0]))
			}
			resource, err := pdp.ParseEntityRef(server)
			if err != nil {
				return usagef("mcp-proxy: --server-resource: %v", err)
			}
			if socket == "" {
				cfg := DefaultConfig()
				if config != "" {
					if cfg, err = LoadConfig(config); err != nil {
						return err
					}
				}
				socket = cfg.Socket
			}
			proxy := &mcpproxy.Proxy{
				Client:      client.New(socket),
				Principal:   who,
				Server:      resource,
				FilterTools: filter,
				// stdout is the MCP stream; the proxy's own log goes to stderr.
				Logger: newLogger(cmd.ErrOrStderr(), logLevel, "text").With("component", "mcp-proxy"),
			}
			if adminSocket != "" {
				proxy.Admin, proxy.Approver = client.New(adminSocket), approver
			}
			return runMCPProxy(cmd.Context(), cmd, proxy, args)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&principal, "principal", "", `who calls the tools, as a Cedar entity: Agent::"id"`)
	fl.StringVar(&socket, "socket", "", "agentpdp's decision socket (default: the config's, ./var/agentpdp.sock)")
	fl.StringVar(&config, "config", "", "read the socket from this agentpdp config `file`")
	fl.StringVar(&adminSocket, "admin-socket", "", "agentpdp's admin socket: ask the user to approve step-ups through MCP elicitation, when the client supports it")
	fl.StringVar(&approver, "approver", "the MCP client's user", "who approvals answered through the MCP client are recorded as")
	fl.StringVar(&server, "server-resource", "", `the resource every call is on (default MCPServer::"<command name>")`)
	fl.BoolVar(&filter, "filter-tools", false, "hide from tools/list the tools the principal is denied")
	fl.StringVar(&logLevel, "log-level", "warn", "debug, info, warn or error")
	return cmd
}

func runMCPProxy(ctx context.Context, cmd *cobra.Command, proxy *mcpproxy.Proxy, args []string) error {
	server := exec.CommandContext(ctx, args[0], args[1:]...)
	server.Stderr = cmd.ErrOrStderr()
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
	perr := proxy.Run(ctx, cmd.InOrStdin(), cmd.OutOrStdout(), in, out)
	werr := server.Wait()
	if perr != nil {
		return perr
	}
	if werr != nil && ctx.Err() == nil {
		return fmt.Errorf("mcp-proxy: %s: %w", args[0], werr)
	}
	return nil
}
