"""The flap guard in the real loop: failing over to a slower backup, then failing straight back.

The in-process simulator plays a provider outage whose backup provider is three times slower.
The failover runs on its own (a constitution that allows it), verification sees latency still
bad and the graph proposes the undo: a failover of the *backup* provider back to the primary.
The old (action, target) guard let that run on its own; now it waits for a person.
"""

from __future__ import annotations

from pathlib import Path

from runtime.audit import AuditLog
from runtime.gameday import ScriptedApprover, play_scenario
from runtime.loop import LoopOptions
from simulations._scenario import load_scenario

SLOW_BACKUP = """\
name: slow_backup_failback
description: llm-alpha fails at 40m; its backup llm-beta answers three times slower.
seed: 2202
duration: 1h10m
start: 2026-03-02T09:00:00Z
fleet:
  providers:
    llm-beta: {latency_factor: 3.0, error_rate: 0.002}
injections:
  - {type: fault, at: 40m, fault: provider_outage, provider: llm-alpha, severity: 1.0, shape: sudden}
ground_truth:
  cause: provider_degradation
  service: support-chat
  provider: llm-alpha
  acceptable_actions: [failover_provider]
"""

FAILOVER_ON_ITS_OWN = """\
default: {verdict: approval}
approval_defaults: {approvers: 1, roles: [approver], timeout: 20m, on_timeout: auto}
flap_guard: {window: 30m}
rules:
  - {id: failover-auto, when: {action: failover_provider}, verdict: auto}
  - {id: escalate-auto, when: {action: escalate}, verdict: auto}
"""


def _play(tmp_path: Path, approvers: tuple[ScriptedApprover, ...]) -> tuple[list[dict[str, str]], list[dict]]:
    scenario = tmp_path / "slow_backup.yaml"
    scenario.write_text(SLOW_BACKUP)
    constitution = tmp_path / "constitution.yaml"
    constitution.write_text(FAILOVER_ON_ITS_OWN)
    db = tmp_path / "loop.sqlite"
    result = play_scenario(
        load_scenario(scenario),
        db=str(db),
        approvers=approvers,
        options=LoopOptions(db=str(db), constitution_path=constitution),
    )
    decisions = [r.payload for r in AuditLog(str(db)).records(kind="decision")]
    return result.actions, decisions


def test_failing_back_from_a_slow_backup_waits_for_a_person(tmp_path: Path) -> None:
    """The undo of a failover (backup -> primary) is held back with a flap-guard reason, and never runs unanswered."""
    actions, decisions = _play(tmp_path, approvers=())
    failovers = [d for d in decisions if d["proposal"]["action"] == "failover_provider"]
    assert [d["proposal"]["target"] for d in failovers] == ["llm-alpha", "llm-beta"]
    first, back = failovers
    assert first["decision"]["verdict"] == "auto"
    assert back["proposal"]["parameters"]["to_provider"] == "llm-alpha"  # the provider pair reversed
    assert back["decision"]["verdict"] == "approval"
    assert back["decision"]["approval"]["on_timeout"] == "reject"  # approval_defaults said auto
    (reason,) = [r for r in back["decision"]["reasons"] if r.startswith("flap guard:")]
    assert "'llm-beta'" in reason and "'llm-alpha'" in reason
    # Nobody answered: only the first failover ever reached the fleet.
    assert [(a["action"], a["target"]) for a in actions] == [("failover_provider", "llm-alpha")]
