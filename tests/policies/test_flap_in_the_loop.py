"""The flap guard in the real loop: after a failover, failing back from the backup waits for a person.

The in-process simulator plays a provider outage; a constitution lets failovers run on their
own. Two ways back: the backup is slower, so verification fails and the graph proposes the
undo; or the failover recovers and the backup degrades later, so a new incident on another
service proposes failing the backup over. Both are failovers of a different target (the
backup), so the old (action, target) guard let them run on their own; now they wait.
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
duration: 1h
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
approval_defaults: {approvers: 1, roles: [approver], timeout: 10m, on_timeout: auto}
flap_guard: {window: 30m}
rules:
  - {id: failover-auto, when: {action: failover_provider}, verdict: auto}
  - {id: escalate-auto, when: {action: escalate}, verdict: auto}
"""


BACKUP_DEGRADES_LATER = """\
name: backup_degrades_later
description: llm-alpha fails at 40m; the failover to llm-beta recovers; llm-beta degrades at 60m.
seed: 2202
duration: 1h05m
start: 2026-03-02T09:00:00Z
injections:
  - {type: fault, at: 40m, fault: provider_outage, provider: llm-alpha, severity: 1.0, shape: sudden}
  - {type: fault, at: 60m, fault: provider_outage, provider: llm-beta, severity: 0.6, shape: sudden}
ground_truth:
  cause: provider_degradation
  service: support-chat
  provider: llm-alpha
  acceptable_actions: [failover_provider]
"""


def _play(
    tmp_path: Path, scenario_text: str, approvers: tuple[ScriptedApprover, ...] = ()
) -> tuple[list[dict[str, str]], list[dict]]:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(scenario_text)
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
    actions, decisions = _play(tmp_path, SLOW_BACKUP)
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


def test_failing_over_a_backup_that_degrades_later_waits_for_a_person(tmp_path: Path) -> None:
    """A new incident's failover of the backup about 20 minutes on (not an undo) is held back too."""
    actions, decisions = _play(tmp_path, BACKUP_DEGRADES_LATER)
    failovers = [d for d in decisions if d["proposal"]["action"] == "failover_provider"]
    assert [d["proposal"]["target"] for d in failovers] == ["llm-alpha", "llm-beta"]
    first, back = failovers
    assert first["decision"]["verdict"] == "auto"
    assert back["proposal"]["parameters"] == {}  # a fresh proposal, not the undo
    assert back["decision"]["verdict"] == "approval"
    (reason,) = [r for r in back["decision"]["reasons"] if r.startswith("flap guard:")]
    assert "'llm-beta'" in reason and "'llm-alpha'" in reason
    assert [(a["action"], a["target"]) for a in actions] == [("failover_provider", "llm-alpha")]
