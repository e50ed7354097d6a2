"""An agent loop in the shape of OpenAI-style function calling, every tool guarded.

The model (here a fixed script) asks for tool calls by name with JSON arguments; the
runtime looks the tool up and calls it. Guarding is one decorator per tool: the call
runs only if agentpdp allows it, and its outcome lands in the decision log.

With LangChain, the same decorator goes under @tool:

    from langchain_core.tools import tool

    @tool
    @guarded_tool(pdp, principal='Agent::"billing-bot"', resource='Tool::"sql.query"')
    def sql_query(query: str) -> str:
        "Run a read-only SQL query."
        ...

Run it against `make run`:  python3 examples/python/example_agent.py
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
from agentpdp import AgentPDPError, Client, Denied, StepUpRequired, guarded_tool  # noqa: E402

pdp = Client(os.environ.get("AGENTPDP_SOCKET", "./var/agentpdp.sock"))
AGENT = 'Agent::"billing-bot"'


@guarded_tool(pdp, principal=AGENT, resource='Tool::"sql.query"', session_id="demo-session")
def sql_query(query: str) -> list:
    return [{"invoices": 42}]


@guarded_tool(pdp, principal=AGENT, resource='Tool::"invoices.export"', session_id="demo-session")
def export_invoices(month: str) -> str:
    return f"invoices-{month}.csv"


@guarded_tool(pdp, principal='Agent::"deploy-bot"', resource='Tool::"k8s.apply"', session_id="demo-session")
def k8s_apply(manifest: str) -> str:
    return f"applied {manifest}"


TOOLS = {f.__name__: f for f in (sql_query, export_invoices, k8s_apply)}


def run(tool_calls):
    """Dispatch tool calls as an agent runtime does; a refusal becomes the tool's result
    so the model can see it and act on it."""
    for call in tool_calls:
        fn = TOOLS[call["name"]]
        try:
            result = fn(**json.loads(call["arguments"]))
            print(f"{call['name']}: {result}")
        except StepUpRequired as e:
            print(f"{call['name']}: needs approval ({e.reason}); decision {e.decision_id}")
        except Denied as e:
            print(f"{call['name']}: {e}")
        except AgentPDPError as e:
            print(f"{call['name']}: agentpdp unavailable, not run: {e}")


if __name__ == "__main__":
    run([
        {"name": "sql_query", "arguments": json.dumps({"query": "select count(*) from invoices"})},
        {"name": "export_invoices", "arguments": json.dumps({"month": "2026-10"})},
        {"name": "k8s_apply", "arguments": json.dumps({"manifest": "web.yaml"})},
    ])
