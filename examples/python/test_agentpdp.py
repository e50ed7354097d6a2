"""Tests of the Python client against a real agentpdp daemon.

make test runs them (cmd/agentpdp's TestPythonClient starts the daemon and sets
AGENTPDP_SOCKET and AGENTPDP_ADMIN_SOCKET); by hand, against `make run`:

    AGENTPDP_SOCKET=var/agentpdp.sock AGENTPDP_ADMIN_SOCKET=var/agentpdp-admin.sock \\
        python3 -m unittest discover -s examples/python
"""

import os
import shutil
import tempfile
import threading
import time
import unittest

from agentpdp import AgentPDPError, Client, Denied, StepUpRequired, entity, guarded_tool, token_file

SOCKET = os.environ.get("AGENTPDP_SOCKET", "./var/agentpdp.sock")
ADMIN = os.environ.get("AGENTPDP_ADMIN_SOCKET", "./var/agentpdp-admin.sock")
# Files holding JWTs of the daemon's configured test issuer for deploy-bot: one
# valid with scope deploy:production, one expired (TestPythonClient writes them).
TOKEN_FILE = os.environ.get("AGENTPDP_TOKEN_FILE", "")
EXPIRED_TOKEN_FILE = os.environ.get("AGENTPDP_EXPIRED_TOKEN_FILE", "")
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


@unittest.skipUnless(TOKEN_FILE, "needs a daemon with a token issuer: cmd/agentpdp's TestPythonClient sets AGENTPDP_TOKEN_FILE")
class TokenTest(unittest.TestCase):
    """A verified token raises standing; a claim does not (policies/agents.cedar:
    a verified scope deploy:production stands in for the production approval)."""

    def setUp(self):
        self.admin = Client(ADMIN)
        self.addCleanup(self.admin.close)
        with open(TOKEN_FILE) as f:
            self.token = f.read().strip()

    def row(self, decision_id):
        return self.admin.call("GET", f"/v1/decisions/{decision_id}")

    def test_verified_token_decides_as_the_verified_principal(self):
        with Client(SOCKET, token=token_file(TOKEN_FILE)) as pdp:
            d = pdp.authorize('Agent::"deploy-bot"', INVOKE, 'Tool::"k8s.apply"', session_id="s-py-token")
        self.assertEqual(d["decision"], "allow", d)
        row = self.row(d["decision_id"])
        self.assertEqual(row["evidence"]["principal"], "verified")
        self.assertTrue(row["evidence"]["identity"]["verified"])
        self.assertEqual(row["evidence"]["identity"]["subject"], "deploy-bot")
        self.assertIn("deploy:production", row["request"]["credential"]["scopes"])
        # The token never reaches the log; its thumbprint does.
        self.assertNotIn(self.token.split(".")[2], repr(row))
        self.assertRegex(row["evidence"]["identity"]["token_sha256"], r"^sha256:[0-9a-f]{64}$")

    def test_a_string_token_and_a_claim(self):
        with Client(SOCKET, token=self.token) as pdp:
            self.assertEqual(pdp.authorize('Agent::"deploy-bot"', INVOKE, 'Tool::"k8s.apply"')["decision"], "allow")
        # The same scope merely claimed in the request's credential does not count.
        with Client(SOCKET) as pdp:
            d = pdp.authorize('Agent::"deploy-bot"', INVOKE, 'Tool::"k8s.apply"',
                              credential={"issuer": "https://idp.example", "scopes": ["deploy:production"]})
        self.assertEqual(d["decision"], "step_up")
        self.assertEqual(self.row(d["decision_id"])["evidence"]["principal"], "claimed")

    def test_bad_tokens_are_denied_with_the_reason(self):
        with Client(SOCKET, token=token_file(EXPIRED_TOKEN_FILE)) as pdp:
            d = pdp.authorize('Agent::"deploy-bot"', INVOKE, 'Tool::"k8s.apply"')
        self.assertEqual(d["decision"], "deny")
        self.assertEqual(d["reasons"][0]["policy"], "token_invalid")
        self.assertTrue(d["reasons"][0]["detail"].startswith("expired"), d["reasons"])
        with Client(SOCKET, token=self.token) as pdp:
            d = pdp.authorize('Agent::"billing-bot"', INVOKE, 'Tool::"sql.query"')
            self.assertEqual(d["decision"], "deny")
            self.assertEqual(d["reasons"][0]["policy"], "principal_mismatch")
            # A token field that differs from the header is bad input: 400.
            with self.assertRaises(AgentPDPError) as cm:
                pdp.authorize('Agent::"deploy-bot"', INVOKE, 'Tool::"k8s.apply"', token="other.token.value")
            self.assertEqual(cm.exception.status, 400)
            self.assertIn("token", str(cm.exception))
            self.assertNotIn(self.token, str(cm.exception))

    def test_token_file_is_followed(self):
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        path = os.path.join(tmp, "svid.jwt")
        shutil.copyfile(TOKEN_FILE, path)
        with Client(SOCKET, token=token_file(path)) as pdp:
            self.assertEqual(pdp.authorize('Agent::"deploy-bot"', INVOKE, 'Tool::"k8s.apply"')["decision"], "allow")
            time.sleep(0.01)
            shutil.copyfile(EXPIRED_TOKEN_FILE, path)
            d = pdp.authorize('Agent::"deploy-bot"', INVOKE, 'Tool::"k8s.apply"')
            self.assertEqual((d["decision"], d["reasons"][0]["policy"]), ("deny", "token_invalid"))

    def test_client_refuses_before_sending_and_never_repeats_the_token(self):
        def broken():
            raise OSError("svid helper is down")

        for token, words in [(broken, "svid helper is down"), ("two words", "one word"),
                             ("Bearer " + self.token, "prefix"), (self.token + "\r\nX-Evil: 1", "one word")]:
            pdp = Client(SOCKET, token=token) if callable(token) else None
            if pdp is None:
                with self.assertRaises(AgentPDPError) as cm:
                    Client(SOCKET, token=token)
            else:
                with pdp, self.assertRaises(AgentPDPError) as cm:
                    pdp.authorize('Agent::"deploy-bot"', INVOKE, 'Tool::"k8s.apply"')
            self.assertIn(words, str(cm.exception))
            self.assertEqual(cm.exception.status, 0)
            self.assertNotIn(self.token, str(cm.exception))
        with Client(SOCKET, token=self.token) as pdp:
            self.assertNotIn(self.token, repr(pdp))
        with self.assertRaises(AgentPDPError) as missing:
            with Client(SOCKET, token=token_file(os.path.join(TOKEN_FILE + ".nothing"))) as pdp:
                pdp.authorize('Agent::"deploy-bot"', INVOKE, 'Tool::"k8s.apply"')
        self.assertIn("FileNotFoundError", str(missing.exception))


if __name__ == "__main__":
    unittest.main()
