// An MCP client built on the official TypeScript SDK, for make test-mcp: it
// starts `agentpdp mcp-proxy … -- <a real MCP server>` as its stdio server,
// runs the scenario named by argv[2], and prints one JSON line per step:
// {"step": …, "ok": true, …} or {"step": …, "error": {"code": …, "message": …}}.
// The Go test (cmd/agentpdp/mcp_npm_test.go) checks them and the log.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { CallToolResultSchema } from "@modelcontextprotocol/sdk/types.js";

const scenario = process.argv[2];
const proxy = JSON.parse(process.env.AGENTPDP_PROXY_CMD);
const dir = process.env.AGENTPDP_FS_DIR;

const transport = new StdioClientTransport({ command: proxy[0], args: proxy.slice(1), env: process.env, stderr: "inherit" });
const client = new Client({ name: "agentpdp-test", version: "1.0.0" }, { capabilities: {} });
await client.connect(transport);

function report(step, fields) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
}

async function step(name, fn) {
  try {
    report(name, { ok: true, ...(await fn()) });
  } catch (e) {
    report(name, { error: { code: e.code ?? null, message: String(e.message ?? e) } });
  }
}

const text = (r) => (r.content ?? []).filter((c) => c.type === "text").map((c) => c.text).join("");
const raw = (params) => client.request({ method: "tools/call", params }, CallToolResultSchema);

if (scenario === "everything") {
  await step("list", async () => ({ tools: (await client.listTools()).tools.map((t) => t.name) }));
  await step("echo", async () => ({ text: text(await client.callTool({ name: "echo", arguments: { message: "hello" } })) }));
  await step("get-env", async () => ({ text: text(await client.callTool({ name: "get-env", arguments: {} })) }));
  // Issue 11: a member that differs only in case, beside the real one.
  await step("Name", async () => ({ text: text(await raw({ name: "get-env", Name: "echo", arguments: {} })) }));
  await step("Arguments", async () => ({ text: text(await raw({ name: "echo", arguments: { message: "ok" }, Arguments: { message: "secret" } })) }));
  // Arguments of 8 MiB, and an answer as large.
  const big = "x".repeat(8 << 20);
  await step("big", async () => ({ length: text(await client.callTool({ name: "echo", arguments: { message: big } }, undefined, { timeout: 120000 })).length }));
  // A call the client cancels: the SDK sends notifications/cancelled.
  await step("cancel", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort("the user pressed stop"), 1500);
    await client.callTool({ name: "trigger-long-running-operation", arguments: { duration: 10, steps: 10 } }, undefined, { signal: ac.signal });
    return {};
  });
  // A task-augmented call (protocol 2025-11-25): created, polled, finished.
  await step("task", async () => {
    const seen = [];
    let result;
    for await (const m of client.experimental.tasks.callToolStream({ name: "simulate-research-query", arguments: { topic: "agentpdp" } }, CallToolResultSchema, { task: { ttl: 60000 } })) {
      seen.push(m.type);
      if (m.type === "result") result = m.result;
      if (m.type === "error") throw m.error;
    }
    return { seen, isError: result?.isError ?? false };
  });
} else if (scenario === "filesystem") {
  const content = "y".repeat(2 << 20);
  await step("write", async () => ({ text: text(await client.callTool({ name: "write_file", arguments: { path: `${dir}/ok.txt`, content } }, undefined, { timeout: 120000 })) }));
  await step("read", async () => ({ length: text(await client.callTool({ name: "read_text_file", arguments: { path: `${dir}/ok.txt` } }, undefined, { timeout: 120000 })).length }));
  await step("secret", async () => ({ text: text(await client.callTool({ name: "write_file", arguments: { path: `${dir}/secret.txt`, content: "s" } })) }));
  await step("Arguments", async () => ({ text: text(await raw({ name: "write_file", arguments: { path: `${dir}/fine.txt`, content: "f" }, Arguments: { path: `${dir}/secret.txt`, content: "s" } })) }));
} else {
  throw new Error(`unknown scenario ${scenario}`);
}
await client.close();
