"""The flap guard in the real loop: after a failover, failing back from the backup waits for a person.

The in-process simulator plays a provider outage; a constitution lets failovers run on their
own. Two ways back: the backup fails too, so verification fails and the graph proposes the
undo; or the failover recovers and the backup degrades later, so a new incident on another
service proposes failing the backup over. Both are failovers of a different target (the
backup), so the old (action, target) guard let them run on their own; now they wait.

A backup that is only slower is no way back: the failover fixed the errors, and the latency is
its declared cost, so verification keeps it (docs/TOOLS.md, "Accepted costs").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests._flap_world import (
    ALPHA_FAILS,
    BETA_DEGRADES,
    BETA_FAILS_TOO,
    failover_decisions,
    failover_scenario,
    flap_guard_reason,
    play_in_loop,
)

BACKUP_FAILS_TOO = failover_scenario(
    name="backup_fails_too",
    description="llm-alpha fails at 40m, and so does its backup llm-beta, so the failover fixes nothing.",
    duration="1h",
    injections=[ALPHA_FAILS, BETA_FAILS_TOO],
)

SLOW_BACKUP = failover_scenario(
    name="slow_backup",
    description="llm-alpha fails at 40m; its backup llm-beta answers three times slower.",
    duration="1h",
    fleet="fleet:\n  providers:\n    llm-beta: {latency_factor: 3.0, error_rate: 0.002}\n",
    injections=[ALPHA_FAILS],
)

FAILOVER_ON_ITS_OWN = """\
default: {verdict: approval}
approval_defaults: {approvers: 1, roles: [approver], timeout: 10m, on_timeout: auto}
flap_guard: {window: 30m}
rules:
  - {id: failover-auto, when: {action: failover_provider}, verdict: auto}
  - {id: escalate-auto, when: {action: escalate}, verdict: auto}
"""


BACKUP_DEGRADES_LATER = failover_scenario(
    name="backup_degrades_later",
    description="llm-alpha fails at 40m; the failover to llm-beta recovers; llm-beta degrades at 60m.",
    duration="1h05m",
    injections=[ALPHA_FAILS, BETA_DEGRADES],
)


def _play(tmp_path: Path, scenario_text: str) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Play with nobody approving; the actions run, and the first two failover decisions (exactly two)."""
    result, records = play_in_loop(tmp_path, scenario_text, FAILOVER_ON_ITS_OWN)
    failovers = failover_decisions(records)
    assert [d["proposal"]["target"] for d in failovers] == ["llm-alpha", "llm-beta"]
    first, back = failovers
    return result.actions, first, back


def test_a_failover_onto_a_slower_backup_is_kept(tmp_path: Path) -> None:
    """Errors fixed at three times the latency: verify keeps the failover ("improved") and nothing fails back."""
    result, records = play_in_loop(tmp_path, SLOW_BACKUP, FAILOVER_ON_ITS_OWN)
    assert [d["proposal"]["target"] for d in failover_decisions(records)] == ["llm-alpha"]
    (verification,) = [r.payload for r in records if r.kind == "verification"]
    assert (verification["recovered"], verification["improved"]) == (False, True)
    assert any(check["accepted_cost"] for check in verification["signals"].values())
    assert [(a["action"], a["target"]) for a in result.actions] == [("failover_provider", "llm-alpha")]


def test_failing_back_from_a_backup_that_did_not_help_waits_for_a_person(tmp_path: Path) -> None:
    """The undo of a failover (backup -> primary) is held back with a flap-guard reason, and never runs unanswered."""
    actions, first, back = _play(tmp_path, BACKUP_FAILS_TOO)
    assert first["decision"]["verdict"] == "auto"
    assert back["proposal"]["parameters"]["to_provider"] == "llm-alpha"  # the provider pair reversed
    assert back["decision"]["verdict"] == "approval"
    assert back["decision"]["approval"]["on_timeout"] == "reject"  # approval_defaults said auto
    reason = flap_guard_reason(back)
    assert "'llm-beta'" in reason and "'llm-alpha'" in reason
    # Nobody answered: only the first failover ever reached the fleet.
    assert [(a["action"], a["target"]) for a in actions] == [("failover_provider", "llm-alpha")]


def test_failing_over_a_backup_that_degrades_later_waits_for_a_person(tmp_path: Path) -> None:
    """A new incident's failover of the backup about 20 minutes on (not an undo) is held back too."""
    actions, first, back = _play(tmp_path, BACKUP_DEGRADES_LATER)
    assert first["decision"]["verdict"] == "auto"
    assert back["proposal"]["parameters"] == {}  # a fresh proposal, not the undo
    assert back["decision"]["verdict"] == "approval"
    reason = flap_guard_reason(back)
    assert "'llm-beta'" in reason and "'llm-alpha'" in reason
    assert [(a["action"], a["target"]) for a in actions] == [("failover_provider", "llm-alpha")]
