"""Real HTTP servers on 127.0.0.1 for adapter tests: a fake simulator and a recording endpoint."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


#: (status, JSON body or None, seconds to stall before answering)
Reply = tuple[int, Any, float]
Handler = Callable[[Seen], Reply]


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)


@contextmanager
def serve(handler: Handler) -> Iterator[Server]:
    """Run `handler` behind a real HTTP server on a free loopback port for the block's duration."""
    server_state: dict[str, Server] = {}

    class _Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            seen = Seen(self.command, self.path, dict(self.headers.items()), json.loads(raw) if raw else None)
            server_state["s"].seen.append(seen)
            status, body, stall = handler(seen)
            if stall:
                time.sleep(stall)
            payload = b"" if body is None else json.dumps(body).encode()
            try:
                self.send_response(status)
                if status in (301, 302, 307, 308) and isinstance(body, dict) and "location" in body:
                    self.send_header("Location", body["location"])
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout): exactly the case under test

        do_GET = do_POST = do_PUT = do_PATCH = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    server_state["s"] = Server(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server_state["s"]
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@dataclass
class FakeSimulator:
    """The simulator's remediation API contract: applies each key once, remembers what it did.

    `script` lists how the next POSTs misbehave: "503" fails before acting, "slow" acts and
    then answers too late for the client's timeout.
    """

    script: list[str] = field(default_factory=list)
    slow_s: float = 0.4
    effects: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, req: Seen) -> Reply:
        if req.method == "GET" and req.path.startswith("/actions/"):
            key = req.path.removeprefix("/actions/")
            with self.lock:
                done = self.effects.get(key)
            return (200, {**done, "status": "applied"}, 0.0) if done else (404, {"detail": "not done"}, 0.0)
        if req.method != "POST" or req.path != "/actions":
            return 404, {"detail": "no such route"}, 0.0
        body = req.body
        if body.get("idempotency_key") != req.headers.get("Idempotency-Key"):
            return 400, {"detail": "Idempotency-Key header and body disagree"}, 0.0
        with self.lock:
            step = self.script.pop(0) if self.script else "ok"
            if step == "503":
                return 503, {"detail": "overloaded"}, 0.0
            key = body["idempotency_key"]
            if body["target"] == "nowhere":
                return 200, {"status": "rejected", "detail": "unknown target", "idempotency_key": key}, 0.0
            status = "duplicate" if key in self.effects else "applied"
            record = {
                "detail": "done",
                "effect": {"changed": body["action"]},
                "idempotency_key": key,
                "action": body["action"],
                "target": body["target"],
            }
            self.effects.setdefault(key, record)
        return 200, {**record, "status": status}, self.slow_s if step == "slow" else 0.0
