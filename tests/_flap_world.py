"""The in-process loop the flap-guard tests play: llm-alpha fails, a failover moves its services to
llm-beta, and something then sends them back or on. A scenario and a constitution (both YAML text)
are played by `play_scenario` on a SQLite audit log; the tests read the decisions it recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.audit import AuditLog, AuditRecord
from runtime.gameday import GamedayResult, ScriptedApprover, play_scenario
from runtime.loop import LoopOptions
from simulations._scenario import load_scenario

#: The primary provider fails outright 40 minutes in (after the detectors have history).
ALPHA_FAILS = "{type: fault, at: 40m, fault: provider_outage, provider: llm-alpha, severity: 1.0, shape: sudden}"
#: The backup fails at the same moment as the primary (it has no services yet, so only a failover shows it).
BETA_FAILS_TOO = "{type: fault, at: 40m, fault: provider_outage, provider: llm-beta, severity: 1.0, shape: sudden}"
#: The backup the failover moved the services to degrades 20 minutes later.
BETA_DEGRADES = "{type: fault, at: 60m, fault: provider_outage, provider: llm-beta, severity: 0.6, shape: sudden}"


def failover_scenario(*, name: str, description: str, duration: str, injections: Sequence[str], fleet: str = "") -> str:
    """Scenario YAML whose ground truth is llm-alpha's outage, answered by failing over; `fleet` is
    an optional `fleet:` section (as YAML text, ending in a newline)."""
    faults = "".join(f"  - {injection}\n" for injection in injections)
    return f"""\
name: {name}
description: {description}
seed: 2202
duration: {duration}
start: 2026-03-02T09:00:00Z
{fleet}injections:
{faults}ground_truth:
  cause: provider_degradation
  service: support-chat
  provider: llm-alpha
  acceptable_actions: [failover_provider]
"""


def play_in_loop(
    tmp_path: Path, scenario_text: str, constitution_text: str, approvers: tuple[ScriptedApprover, ...] = ()
) -> tuple[GamedayResult, list[AuditRecord]]:
    """Play the scenario to its end under the constitution, with `approvers` answering (none: nobody
    does); returns the result and every audit record, in order."""
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(scenario_text)
    constitution = tmp_path / "constitution.yaml"
    constitution.write_text(constitution_text)
    db = tmp_path / "loop.sqlite"
    result = play_scenario(
        load_scenario(scenario),
        db=str(db),
        approvers=approvers,
        options=LoopOptions(db=str(db), constitution_path=constitution),
    )
    return result, list(AuditLog(str(db)).records())


def failover_decisions(records: Sequence[AuditRecord]) -> list[dict[str, Any]]:
    """The recorded decisions (proposal and decision payloads) on failover proposals, in order."""
    decisions = [r.payload for r in records if r.kind == "decision"]
    return [d for d in decisions if d["proposal"]["action"] == "failover_provider"]


def flap_guard_reason(decision: dict[str, Any]) -> str:
    """The decision's one reason given by the flap guard (fails unless there is exactly one)."""
    (reason,) = [r for r in decision["decision"]["reasons"] if r.startswith("flap guard:")]
    return str(reason)
