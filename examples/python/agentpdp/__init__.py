"""A dependency-free client for agentpdp, the policy decision point for AI agents.

It speaks HTTP/1.1 + JSON over agentpdp's Unix sockets with the standard library only.
Every decision it gets back is already durable in agentpdp's log.

    from agentpdp import Client, guarded_tool, StepUpRequired

    pdp = Client("./var/agentpdp.sock")

    @guarded_tool(pdp, principal='Agent::"billing-bot"')
    def sql_query(query: str) -> list:
        ...

    sql_query(query="select 1")   # runs only if allowed; its outcome is recorded

With a token issuer configured in the daemon (docs/identity.md), the client proves
who it is: the token goes in the Authorization: Bearer header of every request and
the decision is made as the principal the token verifies to.

    pdp = Client("./var/agentpdp.sock", token=token_file("/run/spire/svid.jwt"))
"""

from __future__ import annotations

import functools
import http.client
import inspect
import json
import os
import socket
import threading
from typing import Any, Callable, Mapping, Optional, Union

__all__ = [
    "Client",
    "AgentPDPError",
    "Denied",
    "StepUpRequired",
    "guarded_tool",
    "entity",
    "token_file",
]


def entity(type_: str, id_: str) -> dict:
    """An entity reference: entity("Agent", "billing-bot")."""
    return {"type": type_, "id": id_}


class AgentPDPError(Exception):
    """The daemon refused a request (status 400, 404, 409, 503) or could not be reached."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class Denied(AgentPDPError):
    """The action was denied; the wrapped tool did not run."""

    def __init__(self, decision: dict):
        self.decision = decision
        self.decision_id = decision.get("decision_id", "")
        reasons = ", ".join(r["policy"] for r in decision.get("reasons", [])) or "no policy permits it"
        super().__init__(f"denied by {reasons} (decision {self.decision_id})", 200)


class StepUpRequired(AgentPDPError):
    """A human must approve first. Approve decision_id on the admin socket, then call the
    tool again with agentpdp_approval=decision_id."""

    def __init__(self, decision: dict):
        self.decision = decision
        self.decision_id = decision.get("decision_id", "")
        self.reason = next(
            (r.get("annotations", {}).get("step_up") for r in decision.get("reasons", []) if r.get("annotations", {}).get("step_up")),
            "approval needed",
        )
        super().__init__(f"approval needed: {self.reason} (decision {self.decision_id})", 200)


def token_file(path: str) -> Callable[[], str]:
    """A token provider for Client(token=...): the token held in the file at path
    (surrounding whitespace stripped), read again whenever the file changes, so that
    a SPIFFE helper or sidecar rewriting it with a fresh JWT-SVID is followed. A
    missing or empty file raises, and the request is not sent."""
    lock = threading.Lock()
    cached = {"stamp": None, "token": ""}

    def read() -> str:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with lock:
            if stamp != cached["stamp"]:
                with open(path, encoding="ascii") as f:
                    tok = f.read().strip()
                if not tok:
                    raise ValueError(f"token file {path} is empty")
                cached["stamp"], cached["token"] = stamp, tok
            return cached["token"]

    return read


def _check_token(tok: Any) -> str:
    """The token as one RFC 6750 bearer word; the error never quotes it."""
    if not isinstance(tok, str) or not tok:
        raise AgentPDPError("token: want a non-empty string")
    if tok[:7].lower() == "bearer ":
        raise AgentPDPError('token: give the token without the "Bearer " prefix')
    for i, ch in enumerate(tok):
        if ch <= " " or ch >= "\x7f":
            raise AgentPDPError(f"token: a space, control or non-ASCII character at position {i}: a bearer token is one word")
    return tok


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("agentpdp", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class Client:
    """A client of one agentpdp socket. Safe to share between threads: each thread keeps
    its own connection, reused across calls.

    token is a JWT or SPIFFE JWT-SVID the daemon verifies, sent as Authorization:
    Bearer with every request; or a callable returning one (token_file(path), or your
    own refresh), called before each request. If the callable raises, the request is
    not sent and AgentPDPError is raised. The client never logs, prints or repeats
    the token, in its repr or its errors."""

    def __init__(self, socket_path: str = "./var/agentpdp.sock", timeout: float = 10.0,
                 token: Union[str, Callable[[], str], None] = None):
        self.socket_path = socket_path
        self.timeout = timeout
        if token is not None and not callable(token):
            _check_token(token)
        self._token = token
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all = []  # every thread's connection, for close()

    def __repr__(self) -> str:
        return f"Client({self.socket_path!r}, token={'set' if self._token is not None else None})"

    def _bearer(self) -> Optional[str]:
        tok = self._token
        if tok is None:
            return None
        if callable(tok):
            try:
                tok = tok()
            except Exception as exc:
                # Fail closed: a client that cannot get its token does not ask without one.
                raise AgentPDPError(f"token provider failed: {type(exc).__name__}: {exc}") from exc
        return "Bearer " + _check_token(tok)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections of every thread."""
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()

    def _connection(self) -> _UnixConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _UnixConnection(self.socket_path, self.timeout)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def call(self, method: str, path: str, body: Optional[Any] = None) -> dict:
        """Send a request and return the decoded answer; any status but 200 raises."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        bearer = self._bearer()
        if bearer is not None:
            headers["Authorization"] = bearer
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError) as exc:
                conn.close()
                self._local.conn = None
                # A kept-alive connection the daemon closed: retry once on a new one.
                # Nothing was answered, so nothing was decided twice.
                if attempt == 2 or isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
                    raise AgentPDPError(f"agentpdp at {self.socket_path}: {exc}") from exc
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            answer = {"error": raw.decode(errors="replace")}
        if resp.status != 200:
            raise AgentPDPError(answer.get("error", f"HTTP {resp.status}"), resp.status)
        return answer

    def authorize(self, principal, action, resource, context: Optional[Mapping] = None,
                  entities: Optional[list] = None, **fields) -> dict:
        """Ask for a decision. principal, action and resource are Cedar strings
        ('Agent::"billing-bot"') or entity(...) dicts; fields are the audit fields of the
        wire API (session_id, task_id, trace_id, parent_decision_id, tool_call_id,
        on_behalf_of, prompt, credential, approval)."""
        req = {"principal": principal, "action": action, "resource": resource, **fields}
        if context is not None:
            req["context"] = context
        if entities:
            req["entities"] = entities
        return self.call("POST", "/v1/authorize", req)

    def authorize_batch(self, requests: list) -> list:
        """Decisions for several requests, in their order, in one commit."""
        return self.call("POST", "/v1/authorize/batch", {"requests": requests})["decisions"]

    def outcome(self, decision_id: str, status: str, detail: Any = None) -> dict:
        """Record what happened after a decision: success, error or skipped."""
        body = {"status": status}
        if detail is not None:
            body["detail"] = detail
        return self.call("POST", f"/v1/decisions/{decision_id}/outcome", body)

    def approve(self, decision_id: str, approver: str, approved: bool = True, comment: str = "") -> dict:
        """Answer a step_up decision. Only a client of the admin socket can."""
        return self.call("POST", f"/v1/decisions/{decision_id}/approval",
                         {"approver": approver, "approved": approved, "comment": comment})

    def health(self) -> dict:
        return self.call("GET", "/v1/health")


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def guarded_tool(client: Client, principal, action='Action::"invoke_tool"', resource=None,
                 include_args: bool = True, **fields) -> Callable:
    """Wrap a tool so that it runs only when agentpdp allows it, and record its outcome.

    The resource defaults to Tool::"<function name>", and the call's arguments go into
    the context as {"args": {...}}. On deny the function does not run and Denied is
    raised; on step_up, StepUpRequired carries the decision id for a human to approve;
    pass agentpdp_approval=<that id> to the retry. Extra keyword arguments
    (session_id, on_behalf_of, ...) are sent with every request."""

    def decorate(fn: Callable) -> Callable:
        target = resource or f'Tool::"{fn.__name__}"'
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, agentpdp_approval: Optional[str] = None, **kwargs):
            context = {}
            if include_args:
                bound = signature.bind_partial(*args, **kwargs)
                context["args"] = {k: _jsonable(v) for k, v in bound.arguments.items()}
            extra = dict(fields)
            if agentpdp_approval:
                extra["approval"] = agentpdp_approval
            decision = client.authorize(principal, action, target, context=context, **extra)
            if decision["decision"] != "allow":
                try:
                    client.outcome(decision["decision_id"], "skipped")
                finally:
                    if decision["decision"] == "step_up":
                        raise StepUpRequired(decision)
                    raise Denied(decision)
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                client.outcome(decision["decision_id"], "error", {"error": f"{type(exc).__name__}: {exc}"})
                raise
            client.outcome(decision["decision_id"], "success")
            return result

        wrapper.agentpdp_resource = target
        return wrapper

    return decorate
