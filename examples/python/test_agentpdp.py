"""Tests of the Python client against a real agentpdp daemon.

make test runs them (cmd/agentpdp's TestPythonClient starts the daemon and sets
AGENTPDP_SOCKET and AGENTPDP_ADMIN_SOCKET); by hand, against `make run`:

    AGENTPDP_SOCKET=var/agentpdp.sock AGENTPDP_ADMIN_SOCKET=var/agentpdp-admin.sock \\
        python3 -m unittest discover -s examples/python
"""

import os
import threading
import unittest

from agentpdp import AgentPDPError, Client, Denied, StepUpRequired, entity, guarded_tool

SOCKET = os.environ.get("AGENTPDP_SOCKET", "./var/agentpdp.sock")
ADMIN = os.environ.get("AGENTPDP_ADMIN_SOCKET", "./var/agentpdp-admin.sock")
INVOKE = 'Action::"invoke_tool"'


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.pdp = Client(SOCKET)
        self.admin = Client(ADMIN)
        self.addCleanup(self.pdp.close)
        self.addCleanup(self.admin.close)

    def test_authorize_three_answers(self):
        allow = self.pdp.authorize('Agent::"billing-bot"', INVOKE, 'Tool::"sql.query"', context={"args": {"q": "select 1", "limit": 2.5}})
        self.assertEqual(allow["decision"], "allow")
        self.assertGreater(allow["seq"], 0)
        step = self.pdp.authorize(entity("Agent", "deploy-bot"), INVOKE, entity("Tool", "k8s.apply"))
        self.assertEqual(step["decision"], "step_up")
        self.assertEqual(step["reasons"][0]["policy"], "prod-writes-need-approval")
        deny = self.pdp.authorize('Agent::"billing-bot"', INVOKE, 'Tool::"invoices.export"', session_id="s-py")
        self.assertEqual(deny["decision"], "deny")

    def test_bad_input_is_400_naming_the_field(self):
        with self.assertRaises(AgentPDPError) as cm:
            self.pdp.authorize('Agent::billing-bot', INVOKE, 'Tool::"x"')
        self.assertEqual(cm.exception.status, 400)
        self.assertIn("principal", str(cm.exception))

    def test_guarded_tool_allow_runs_and_records(self):
        calls = []

        @guarded_tool(self.pdp, principal='Agent::"billing-bot"', resource='Tool::"sql.query"', session_id="s-py")
        def sql_query(query, limit=10):
            calls.append((query, limit))
            return ["row"]

        self.assertEqual(sql_query("select 1", limit=5), ["row"])
        self.assertEqual(calls, [("select 1", 5)])

    def test_guarded_tool_deny_never_runs(self):
        @guarded_tool(self.pdp, principal='Agent::"billing-bot"', resource='Tool::"invoices.export"')
        def export(month):
            self.fail("a denied tool ran")

        with self.assertRaises(Denied) as cm:
            export("2026-10")
        self.assertIn("restricted-data-needs-ticket", str(cm.exception))

    def test_guarded_tool_error_is_reraised(self):
        @guarded_tool(self.pdp, principal='Agent::"billing-bot"', resource='Tool::"sql.query"')
        def broken():
            raise RuntimeError("database is down")

        with self.assertRaises(RuntimeError):
            broken()

    def test_step_up_approve_retry_once(self):
        runs = []

        @guarded_tool(self.pdp, principal='Agent::"deploy-bot"', resource='Tool::"k8s.apply"')
        def apply(manifest):
            runs.append(manifest)
            return "applied"

        with self.assertRaises(StepUpRequired) as cm:
            apply("web.yaml")
        step = cm.exception
        self.assertEqual(step.reason, "production change needs approval")
        self.assertEqual(runs, [])
        # The agent cannot approve itself: approvals are on the admin socket only.
        with self.assertRaises(AgentPDPError) as self_approval:
            self.pdp.approve(step.decision_id, "deploy-bot")
        self.assertEqual(self_approval.exception.status, 404)
        approval = self.admin.approve(step.decision_id, "carol@example.com", True, "CHG-1234")
        self.assertTrue(approval["recorded"])
        self.assertEqual(apply("web.yaml", agentpdp_approval=step.decision_id), "applied")
        self.assertEqual(runs, ["web.yaml"])
        # Single use: the same approval does not allow a second run.
        with self.assertRaises(Denied) as again:
            apply("web.yaml", agentpdp_approval=step.decision_id)
        self.assertIn("approval_invalid", str(again.exception))

    def test_threads_share_a_client(self):
        errors = []

        def work():
            try:
                for _ in range(20):
                    d = self.pdp.authorize('Agent::"billing-bot"', INVOKE, 'Tool::"web.search"')
                    assert d["decision"] == "allow", d
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])

    def test_batch_in_order(self):
        ds = self.pdp.authorize_batch([
            {"principal": 'Agent::"billing-bot"', "action": INVOKE, "resource": 'Tool::"sql.query"'},
            {"principal": 'Agent::"scraper"', "action": INVOKE, "resource": 'Tool::"web.search"'},
        ])
        self.assertEqual([d["decision"] for d in ds], ["allow", "deny"])
        self.assertEqual(ds[1]["seq"], ds[0]["seq"] + 1)

    def test_unreachable_daemon_fails_closed(self):
        with Client("/nonexistent/agentpdp.sock") as nowhere:
            @guarded_tool(nowhere, principal='Agent::"a"')
            def tool():
                self.fail("ran without a decision")

            with self.assertRaises(AgentPDPError):
                tool()


if __name__ == "__main__":
    unittest.main()
