"""The shared daemon-test harness: the loopback JSON server and the daemon config builder behave as the
daemon tests rely on (every request recorded in order, clean shutdown, a config the daemon accepts)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.config import load_config
from tests._daemon_harness import LoopbackJSONServer, Seen, daemon_config


def _echo(request: Seen) -> tuple[int, Any]:
    if request.path == "/teapot":
        return 418, {"number": request.number}
    if request.path == "/broken":
        raise KeyError("no such thing")
    return 200, {"number": request.number, "got": request.json() if request.body else None}


class TestLoopbackJSONServer:
    def test_answers_with_the_status_and_json_the_answer_gives(self) -> None:
        """A request gets the answer's status and JSON body, and is recorded with lower-cased headers."""
        with LoopbackJSONServer(_echo) as server:
            ok = httpx.post(f"{server.url}/hook", json={"a": 1}, headers={"X-Token": "t"})
            teapot = httpx.get(f"{server.url}/teapot")
            (first, second) = server.requests
        assert (ok.status_code, ok.json()) == (200, {"number": 1, "got": {"a": 1}})
        assert (teapot.status_code, teapot.json()) == (418, {"number": 2})
        assert (first.method, first.path, first.headers["x-token"], first.json()) == ("POST", "/hook", "t", {"a": 1})
        assert (second.method, second.path, second.body) == ("GET", "/teapot", "")

    def test_concurrent_requests_are_each_recorded_once_with_distinct_numbers(self) -> None:
        """Requests arriving together are all recorded, numbered 1..n without gaps or repeats."""
        with LoopbackJSONServer(_echo) as server, ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: httpx.post(f"{server.url}/n", json=i).json(), range(40)))
            seen = server.requests
        assert sorted(a["number"] for a in answers) == list(range(1, 41))
        assert [s.number for s in seen] == list(range(1, 41))
        assert sorted(s.json() for s in seen) == list(range(40))
        assert server.paths == ["/n"] * 40 and len(server.bodies) == len(server.headers) == 40

    def test_an_answer_that_raises_becomes_a_500_naming_the_error(self) -> None:
        """A broken answer function shows up as a 500 whose body names the exception."""
        with LoopbackJSONServer(_echo) as server:
            response = httpx.post(f"{server.url}/broken", json={})
        assert response.status_code == 500
        assert "KeyError" in response.json()["error"] and "no such thing" in response.json()["error"]

    def test_after_the_block_the_port_is_closed(self) -> None:
        """Leaving the context stops serving: a later request is refused and `url` says why."""
        with LoopbackJSONServer(_echo) as server:
            url = server.url
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/late", timeout=2)
        with pytest.raises(RuntimeError, match="context manager"):
            _ = server.url


class TestDaemonConfig:
    def test_the_config_built_loads_with_every_optional_section(self, tmp_path: Path) -> None:
        """A config with tokens, notifications, a webhook target and an LLM diagnoser passes the daemon's loader."""
        path = daemon_config(
            tmp_path,
            sim="http://127.0.0.1:9",
            api_port=8123,
            db=tmp_path / "h.db",
            act_on_simulator=False,
            webhook_targets={"llm-*": {"url": "http://127.0.0.1:9/r", "actions": ["failover_provider"]}},
            tokens={"ana": ("tok-ana", ["approver"])},
            notifications={"webhooks": ["http://127.0.0.1:9/hook"], "states": ["open", "resolved"]},
            diagnoser={"kind": "llm", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
        )
        config = load_config(path)
        assert config.api.port == 8123 and config.database_url == f"sqlite:///{tmp_path / 'h.db'}"
        assert config.tools.simulator_url is None and list(config.tools.webhook_targets) == ["llm-*"]
        assert config.auth.tokens_file == tmp_path / "tokens.yaml"
        assert config.diagnoser.kind == "llm" and [s.type for s in config.sources] == ["simulator"]

    def test_by_default_actions_go_to_the_simulator_and_no_auth_is_configured(self, tmp_path: Path) -> None:
        """Without options the daemon polls and acts on the simulator, with the repo's constitution."""
        config = load_config(daemon_config(tmp_path, sim="http://127.0.0.1:9", api_port=8124, db=tmp_path / "h.db"))
        assert config.tools.simulator_url == "http://127.0.0.1:9"
        assert config.auth.tokens_file is None and config.notifications.webhooks == []
        assert config.constitution.name == "constitution.yaml" and config.grace_period_s == 5
