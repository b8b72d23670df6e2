"""Crash windows hit on purpose: the loop's process SIGKILLs itself at a chosen point of a graph step, then restarts.

The random chaos run (test_chaos.py, seed 11) found an incident left `open` forever: the process
died after LangGraph had saved a step's writes but before the checkpoint applying them, so the
thread looked finished (no next step, no interrupt) and recovery only re-synced it. These tests
die in exactly that window, and in the one before a step's writes are saved, then restart the
loop on the same database and world: every incident must end final, no action may run twice,
no approval may be lost and the audit chain must verify.

`HOMEOSTAT_CRASH_POINTS=all` runs every step of the incident graph in both windows; the default
run covers the steps whose loss would matter most (the first, the approval, the action, the
recovery judgement, the close).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.chaos import CrashPoint, run_crash_point

SCENARIO = Path(__file__).resolve().parents[2] / "simulations" / "scenarios" / "provider_outage.yaml"
ALL = os.environ.get("HOMEOSTAT_CRASH_POINTS") == "all"

#: Every step the provider outage's incident passes through (its failover needs an approval).
STEPS = ["triage", "diagnose", "propose", "gate", "await_approval", "execute", "verify", "judge_recovery", "close"]
AFTER_WRITES = STEPS if ALL else ["triage", "await_approval", "execute", "judge_recovery", "close"]
#: Steps that wait at an interrupt (await_approval, judge_recovery) are left out: killed before their
#: writes, the thread is still waiting, which the approval and recovery-window ticks already resume.
BEFORE_WRITES = ["triage", "diagnose", "propose", "gate", "execute", "verify", "close"] if ALL else ["execute"]


@pytest.mark.parametrize("node", AFTER_WRITES)
def test_a_kill_after_a_steps_writes_are_saved_is_resumed_not_left_open(node: str, tmp_path: Path) -> None:
    """Killed between a step's saved writes and its checkpoint, the thread is resumed and every incident ends final."""
    report = run_crash_point(SCENARIO, tmp_path, CrashPoint(node, "after_writes"), step_s=60)
    assert report.died_there, f"the loop never reached {node}"
    assert any((node, True) in tasks for tasks in report.stranded.values()), report.stranded
    assert report.violations == []
    assert report.actions_applied == 1, report.incidents  # the failover, once


@pytest.mark.parametrize("node", BEFORE_WRITES)
def test_a_kill_before_a_steps_writes_are_saved_reruns_the_step_without_repeating_its_action(
    node: str, tmp_path: Path
) -> None:
    """Killed after a step's effects but before its writes were saved, the step runs again and no action repeats."""
    report = run_crash_point(SCENARIO, tmp_path, CrashPoint(node, "before_writes"), step_s=60)
    assert report.died_there, f"the loop never reached {node}"
    assert any((node, False) in tasks for tasks in report.stranded.values()), report.stranded
    assert report.violations == []
    assert report.actions_applied == 1, report.incidents


def test_a_crash_point_names_its_moment() -> None:
    """A crash point with an unknown moment is refused with the field and the accepted values."""
    with pytest.raises(ValueError, match=r"CrashPoint\.when: expected 'after_writes' or 'before_writes'"):
        CrashPoint("triage", "during")
