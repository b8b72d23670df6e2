"""The healing benchmark's scorer: what a controller did in a scenario, judged against ground truth.

Pure functions over plain data. Whoever plays a scenario (the real loop in `runtime.gameday`,
or the baseline in `simulations.baseline`) reports a `PlayOutcome`; `score` judges one,
`summarize` rolls many up into the figures `homeostat sim bench` prints.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain import ActionName, Cause
from simulations._faults import FaultRecord
from simulations._scenario import Scenario
from simulations._spec import FaultTruth

#: An incident opened this long before the first fault still counts as reacting to it
#: (detectors may fire on the deploy that carries the fault, stamped at the same instant).
ONSET_SLACK = timedelta(seconds=60)

APPLIED = frozenset({"applied", "succeeded"})
DENIED = frozenset({"denied", "deny"})


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class IncidentOutcome(_Data):
    """One incident the controller opened."""

    id: str
    opened_at: datetime
    services: tuple[str, ...] = ()
    cause: str | None = None
    state: str = "open"
    closed_at: datetime | None = None


class ActionTaken(_Data):
    """One remediation the controller attempted; status applied / duplicate / rejected / denied / failed."""

    action: str
    target: str
    ts: datetime
    status: str
    incident_id: str | None = None


class FaultOutcome(_Data):
    """One injected fault's life as the fleet saw it (from `Fleet.fault_log()`)."""

    id: str
    fault: str
    cause: str
    service: str | None = None
    provider: str | None = None
    started_at: datetime | None = None
    cleared_at: datetime | None = None
    cleared_by: str | None = None

    @classmethod
    def from_record(cls, record: FaultRecord) -> FaultOutcome:
        return cls(
            id=record.id,
            fault=record.fault,
            cause=record.cause.value,
            service=record.service,
            provider=record.provider,
            started_at=record.started_at,
            cleared_at=record.cleared_at,
            cleared_by=record.cleared_by,
        )


class PlayOutcome(_Data):
    """What happened when a controller played one scenario."""

    scenario: str
    controller: str = "homeostat"
    incidents: tuple[IncidentOutcome, ...] = ()
    actions: tuple[ActionTaken, ...] = ()
    faults: tuple[FaultOutcome, ...] = ()
    ended_at: datetime | None = None


class ScenarioScore(_Data):
    """One scenario's verdict. Fields are None where they do not apply (e.g. detection on a control)."""

    scenario: str
    controller: str
    control: bool
    cause: str | None
    detected: bool | None
    time_to_detect_s: float | None
    diagnosis_correct: bool | None
    action_correct: bool | None
    time_to_recover_s: float | None
    recovered: bool | None
    observed_s: float | None = Field(None, description="onset to end of play: an unrecovered fault's censored time")
    false_incidents: int
    false_actions: int
    unsafe_actions: int
    denied_actions: int
    wrong_actions: int = Field(0, description="applied remediations in a fault scenario matching no acceptable one")
    actions: tuple[str, ...] = ()


class BenchSummary(_Data):
    """The roll-up over scenarios; `to_json()` gives the keys the issue asks for."""

    controller: str
    scenarios: int
    fault_scenarios: int
    controls: int
    detection_rate: float | None
    mttd_s: float | None
    diagnosis_accuracy: float | None
    right_action_rate: float | None
    mttr_s: float | None
    recovery_rate: float | None
    false_actions: int
    false_incidents: int
    unsafe_actions: int
    denied_actions: int
    wrong_actions: int = 0

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _truths(scenario: Scenario) -> tuple[FaultTruth, ...]:
    return scenario.ground_truth.faults


def fault_onset(scenario: Scenario, outcome: PlayOutcome) -> datetime | None:
    """When trouble started: the first fault the fleet started, else the first fault injection."""
    started = [f.started_at for f in outcome.faults if f.started_at is not None]
    if started:
        return min(started)
    ats = [i.at for i in scenario.injections if i.type == "fault"]
    return scenario.start + timedelta(seconds=min(ats)) if ats else None


def _targets(truth: FaultTruth) -> set[str]:
    return {t for t in (truth.action_target, truth.service, truth.provider) if t}


def _is_right(action: ActionTaken, truths: Sequence[FaultTruth]) -> bool:
    return any(
        action.action in {a.value for a in t.acceptable_actions} and action.target in _targets(t) for t in truths
    )


def _is_harmful(action: ActionTaken, scenario: Scenario) -> bool:
    harmful = {a.value for a in scenario.ground_truth.harmful_actions}
    for truth in scenario.ground_truth.also:
        harmful |= {a.value for a in truth.harmful_actions}
    return action.action in harmful and not _is_right(action, _truths(scenario))


def score(scenario: Scenario, outcome: PlayOutcome) -> ScenarioScore:
    """Judge one play of one scenario against its ground truth."""
    truths = _truths(scenario)
    control = not truths
    applied = [a for a in outcome.actions if a.status in APPLIED]
    denied = sum(1 for a in outcome.actions if a.status in DENIED)
    unsafe = sum(1 for a in applied if _is_harmful(a, scenario))
    names = tuple(f"{a.action}@{a.target}:{a.status}" for a in outcome.actions)
    if control:
        remediations = [a for a in applied if a.action != ActionName.ESCALATE.value]
        return ScenarioScore(
            scenario=scenario.name,
            controller=outcome.controller,
            control=True,
            cause=None,
            detected=None,
            time_to_detect_s=None,
            diagnosis_correct=None,
            action_correct=None,
            time_to_recover_s=None,
            recovered=None,
            false_incidents=len(outcome.incidents),
            false_actions=len(remediations),
            unsafe_actions=unsafe,
            denied_actions=denied,
            actions=names,
        )
    onset = fault_onset(scenario, outcome)
    assert onset is not None  # a scenario with ground truth has a fault injection
    reacting = sorted((i for i in outcome.incidents if i.opened_at >= onset - ONSET_SLACK), key=lambda i: i.opened_at)
    early = len(outcome.incidents) - len(reacting)
    detected = bool(reacting)
    causes = {t.cause.value for t in truths}
    diagnosis_correct = any(i.cause in causes for i in reacting)
    action_correct = any(_is_right(a, truths) for a in applied)
    recovered_at = _recovered_at(outcome, truths)
    return ScenarioScore(
        scenario=scenario.name,
        controller=outcome.controller,
        control=False,
        cause=truths[0].cause.value,
        detected=detected,
        time_to_detect_s=max(0.0, (reacting[0].opened_at - onset).total_seconds()) if reacting else None,
        diagnosis_correct=diagnosis_correct,
        action_correct=action_correct,
        time_to_recover_s=(recovered_at - onset).total_seconds() if recovered_at is not None else None,
        recovered=recovered_at is not None,
        observed_s=(outcome.ended_at - onset).total_seconds() if outcome.ended_at is not None else None,
        false_incidents=early,
        false_actions=0,
        unsafe_actions=unsafe,
        denied_actions=denied,
        wrong_actions=sum(1 for a in applied if a.action != ActionName.ESCALATE.value and not _is_right(a, truths)),
        actions=names,
    )


def _recovered_at(outcome: PlayOutcome, truths: Sequence[FaultTruth]) -> datetime | None:
    """When the last ground-truth fault was removed by an action (a fault that merely expired
    or is still live means the controller did not recover the service)."""
    wanted = {t.cause.value for t in truths}
    relevant = [f for f in outcome.faults if f.cause in wanted]
    if not relevant:
        return None
    ends = []
    for fault in relevant:
        if fault.cleared_at is None or fault.cleared_by in (None, "expired"):
            return None
        ends.append(fault.cleared_at)
    return max(ends)


def _rate(flags: Iterable[bool | None]) -> float | None:
    values = [bool(f) for f in flags if f is not None]
    return round(sum(values) / len(values), 4) if values else None


def _median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 1) if present else None


def summarize(scores: Sequence[ScenarioScore], *, controller: str | None = None) -> BenchSummary:
    """Roll scenario scores up: rates over fault scenarios, medians over those that got there."""
    faults = [s for s in scores if not s.control]
    return BenchSummary(
        controller=controller or (scores[0].controller if scores else "homeostat"),
        scenarios=len(scores),
        fault_scenarios=len(faults),
        controls=len(scores) - len(faults),
        detection_rate=_rate(s.detected for s in faults),
        mttd_s=_median(s.time_to_detect_s for s in faults),
        diagnosis_accuracy=_rate(s.diagnosis_correct for s in faults),
        right_action_rate=_rate(s.action_correct for s in faults),
        # an unrecovered fault counts as the whole time it was watched (censored), not as missing
        mttr_s=_median(s.time_to_recover_s if s.recovered else s.observed_s for s in faults),
        recovery_rate=_rate(s.recovered for s in faults),
        false_actions=sum(s.false_actions for s in scores),
        false_incidents=sum(s.false_incidents for s in scores),
        unsafe_actions=sum(s.unsafe_actions for s in scores),
        denied_actions=sum(s.denied_actions for s in scores),
        wrong_actions=sum(s.wrong_actions for s in scores),
    )


def cause_names() -> list[str]:
    """The cause taxonomy, for reports."""
    return [c.value for c in Cause]


class BenchReport(_Data):
    """The JSON `homeostat sim bench --json` writes: per scenario and overall, beside the baseline."""

    overall: BenchSummary
    baseline: BenchSummary
    scenarios: tuple[ScenarioScore, ...] = ()
    baseline_scenarios: tuple[ScenarioScore, ...] = ()
    notes: tuple[str, ...] = Field(default=())
