"""The LLM diagnoser end to end over real HTTP: langchain-openai against a loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agents.diagnosis import DeterministicDiagnoser, LLMDiagnoser, build_openai_compatible_model
from domain import Cause
from tests.agents import test_diagnosis_fleet as fleet


def completion(message: dict[str, Any], n: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": 1700000000,
        "model": "loopback-model",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
    }


class ScriptedServer:
    """Answers /v1/chat/completions from a script and records the requests it saw."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = replies
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                outer.auth.append(self.headers.get("Authorization"))
                reply = outer.replies[min(len(outer.requests), len(outer.replies)) - 1]
                data = json.dumps(completion(reply, len(outer.requests))).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    srv = ScriptedServer([])
    srv.thread.start()
    yield srv
    srv.server.shutdown()
    srv.server.server_close()


ANSWER = {
    "cause": "bad_prompt_deploy",
    "service": fleet.SC,
    "confidence": 0.85,
    "rationale": "prompt change 3 minutes before onset",
    "evidence": [{"type": "change", "change_id": "chg-1"}],
}


def test_tool_call_and_answer_over_http(server: ScriptedServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real OpenAI-compatible round trip: the tool call runs, the answer is accepted, the key stays in the header."""
    monkeypatch.setenv("HOMEOSTAT_TEST_LOOPBACK_KEY", "sk-loopback-secret-123456")
    server.replies = [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call-1", "type": "function", "function": {"name": "list_changes", "arguments": "{}"}}
            ],
        },
        {"role": "assistant", "content": json.dumps(ANSWER)},
    ]
    model = build_openai_compatible_model(server.url, "loopback-model", "HOMEOSTAT_TEST_LOOPBACK_KEY", timeout_s=10)
    ctx, _ = fleet.bad_prompt_deploy().build()
    d = LLMDiagnoser(model, fallback=DeterministicDiagnoser(), timeout_s=20).diagnose(ctx)
    assert (d.diagnoser, d.cause, d.service) == ("llm", Cause.BAD_PROMPT_DEPLOY, fleet.SC)
    assert len(server.requests) == 2
    assert {t["function"]["name"] for t in server.requests[0]["tools"]} >= {"list_changes", "compare_windows"}
    tool_turn = server.requests[1]["messages"][-1]
    assert tool_turn["role"] == "tool" and "chg-1" in tool_turn["content"]
    assert server.auth[0] == "Bearer sk-loopback-secret-123456"
    assert "sk-loopback-secret" not in json.dumps(server.requests)


def test_unreachable_endpoint_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A closed port is a model error: the deterministic diagnosis is used and the reason recorded."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model = build_openai_compatible_model(f"http://127.0.0.1:{port}/v1", "m", timeout_s=2)
    ctx, _ = fleet.bad_prompt_deploy().build()
    d = LLMDiagnoser(model, fallback=DeterministicDiagnoser(), timeout_s=10).diagnose(ctx)
    assert d.diagnoser == "deterministic"
    assert any("model error" in n for n in d.notes)
