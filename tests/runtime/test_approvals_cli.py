"""`homeostat approvals ...` against a live API on loopback."""

from __future__ import annotations

from typer.testing import CliRunner

from runtime.approvals_cli import app
from tests.runtime.conftest import TOKENS, LiveApi

runner = CliRunner()


def run(live_api: LiveApi, who: str | None, *args: str) -> tuple[int, str, str]:
    env = {"HOMEOSTAT_URL": live_api.url, "COLUMNS": "200"}
    if who:
        env["HOMEOSTAT_TOKEN"] = TOKENS[who][0]
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_list_shows_pending_proposals(live_api: LiveApi) -> None:
    """`list` shows each pending incident with its action, target, blast radius and rule."""
    code, out, _ = run(live_api, "vera", "list")
    assert code == 0
    assert "1 proposal(s) waiting" in out
    for text in ("inc-1", "failover_provider", "openai", "40%", "failover-needs-approval"):
        assert text in out
    assert "inc-2" not in out


def test_approve_changes_state_and_is_attributed(live_api: LiveApi) -> None:
    """`approve ID --comment` approves as the token's identity and prints the new state."""
    code, out, _ = run(live_api, "alice", "approve", "inc-1", "--comment", "go ahead")
    assert code == 0, out
    assert "Approved incident inc-1; it is now executing." in " ".join(out.split())
    assert live_api.service.incidents["inc-1"]["approvals"][0] == {
        "approver": "alice",
        "approve": True,
        "comment": "go ahead",
    }


def test_reject_with_reason(live_api: LiveApi) -> None:
    """`reject ID --reason` rejects with the reason recorded."""
    code, _, _ = run(live_api, "alice", "reject", "inc-1", "--reason", "too broad")
    assert code == 0
    assert live_api.service.incidents["inc-1"]["state"] == "rejected"


def test_refusals_exit_nonzero_with_server_message(live_api: LiveApi) -> None:
    """A viewer approving, or approving twice, exits 1 with the server's message on stderr."""
    code, _, err = run(live_api, "vera", "approve", "inc-1")
    assert code == 1
    assert "403" in err and "needs one of ['approver']" in " ".join(err.split())
    run(live_api, "alice", "approve", "inc-1")
    code, _, err = run(live_api, "alice", "approve", "inc-1")
    assert code == 1 and "not awaiting approval" in " ".join(err.split())


def test_missing_token_and_unreachable_server(live_api: LiveApi) -> None:
    """Without a token, or with a server that is down, the CLI says so and exits 2."""
    code, _, err = run(live_api, None, "list")
    assert code == 2 and "no token" in err
    result = runner.invoke(app, ["list", "--url", "http://127.0.0.1:9", "--token", "x"])
    assert result.exit_code == 2 and "cannot reach" in result.stderr
