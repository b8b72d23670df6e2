"""The benchmark scorer and the baseline controller: outcomes judged against ground truth."""

from __future__ import annotations

from datetime import datetime, timedelta

from simulations import builtin_scenarios, load_scenario
from simulations.baseline import play_baseline
from simulations.bench import ActionTaken, FaultOutcome, IncidentOutcome, PlayOutcome, score, summarize


def _scenario(name: str):
    return load_scenario(next(p for p in builtin_scenarios() if p.stem == name))


def _at(scenario, minutes: float) -> datetime:
    return scenario.start + timedelta(minutes=minutes)


def _fault(scenario, cause: str, start: float, cleared: float | None, by: str | None = "k") -> FaultOutcome:
    return FaultOutcome(
        id="f1",
        fault=cause,
        cause=cause,
        service="support-chat",
        started_at=_at(scenario, start),
        cleared_at=None if cleared is None else _at(scenario, cleared),
        cleared_by=by if cleared is not None else None,
    )


class TestScore:
    def test_right_detection_diagnosis_and_action(self) -> None:
        """An incident after onset with the true cause and the acceptable action scores fully, with times."""
        sc = _scenario("bad_prompt_deploy")
        outcome = PlayOutcome(
            scenario=sc.name,
            incidents=(
                IncidentOutcome(
                    id="i1",
                    opened_at=_at(sc, 41),
                    services=("support-chat",),
                    cause="bad_prompt_deploy",
                    state="resolved",
                ),
            ),
            actions=(
                ActionTaken(action="rollback_prompt_version", target="support-chat", ts=_at(sc, 44), status="applied"),
            ),
            faults=(_fault(sc, "bad_prompt_deploy", 40, 44),),
            ended_at=_at(sc, 105),
        )
        result = score(sc, outcome)
        assert (result.detected, result.diagnosis_correct, result.action_correct) == (True, True, True)
        assert result.time_to_detect_s == 60 and result.time_to_recover_s == 240
        assert result.unsafe_actions == 0 and result.false_incidents == 0

    def test_wrong_cause_and_harmful_action_are_counted(self) -> None:
        """A wrong diagnosis and a ground-truth-harmful action score as such; the fault is not recovered."""
        sc = _scenario("bad_prompt_deploy")
        outcome = PlayOutcome(
            scenario=sc.name,
            incidents=(IncidentOutcome(id="i1", opened_at=_at(sc, 42), cause="provider_degradation"),),
            actions=(
                ActionTaken(action="failover_provider", target="llm-alpha", ts=_at(sc, 45), status="applied"),
                ActionTaken(action="rollback_prompt_version", target="support-chat", ts=_at(sc, 45), status="denied"),
            ),
            faults=(_fault(sc, "bad_prompt_deploy", 40, None),),
            ended_at=_at(sc, 105),
        )
        result = score(sc, outcome)
        assert (result.detected, result.diagnosis_correct, result.action_correct) == (True, False, False)
        assert result.unsafe_actions == 1 and result.denied_actions == 1 and result.wrong_actions == 1
        assert result.recovered is False and result.observed_s == 65 * 60

    def test_incident_before_onset_is_false(self) -> None:
        """An incident opened well before the fault began is a false incident, not a detection."""
        sc = _scenario("bad_prompt_deploy")
        outcome = PlayOutcome(
            scenario=sc.name,
            incidents=(IncidentOutcome(id="i0", opened_at=_at(sc, 20)),),
            faults=(_fault(sc, "bad_prompt_deploy", 40, None),),
        )
        result = score(sc, outcome)
        assert result.detected is False and result.false_incidents == 1

    def test_actions_on_a_control_are_false_actions(self) -> None:
        """On a no-fault control every remediation (not a page) is a false action."""
        sc = _scenario("quiet_day")
        outcome = PlayOutcome(
            scenario=sc.name,
            incidents=(IncidentOutcome(id="i1", opened_at=_at(sc, 50)),),
            actions=(
                ActionTaken(action="throttle", target="support-chat", ts=_at(sc, 52), status="applied"),
                ActionTaken(action="escalate", target="support-chat", ts=_at(sc, 52), status="applied"),
            ),
        )
        result = score(sc, outcome)
        assert result.control and result.false_actions == 1 and result.false_incidents == 1
        assert result.unsafe_actions == 1 and result.detected is None


class TestSummary:
    def test_summary_has_the_issue_keys_and_censors_unrecovered(self) -> None:
        """The roll-up carries the issue's keys; an unrecovered fault counts its whole watched time."""
        sc = _scenario("bad_prompt_deploy")
        healed = PlayOutcome(
            scenario=sc.name,
            faults=(_fault(sc, "bad_prompt_deploy", 40, 42),),
            incidents=(IncidentOutcome(id="i", opened_at=_at(sc, 41), cause="bad_prompt_deploy"),),
            ended_at=_at(sc, 105),
        )
        stuck = PlayOutcome(
            scenario=sc.name, faults=(_fault(sc, "bad_prompt_deploy", 40, None),), ended_at=_at(sc, 105)
        )
        summary = summarize([score(sc, healed), score(sc, stuck), score(sc, stuck)]).to_json()
        for key in (
            "detection_rate",
            "mttd_s",
            "diagnosis_accuracy",
            "right_action_rate",
            "mttr_s",
            "false_actions",
            "unsafe_actions",
        ):
            assert key in summary
        assert summary["detection_rate"] == round(1 / 3, 4)
        assert summary["mttr_s"] == 65 * 60  # median of 120, 3900, 3900


class TestBaseline:
    def test_baseline_rolls_back_a_bad_deploy(self) -> None:
        """The baseline catches a deploy-borne fault by threshold and rolls the last change back."""
        sc = _scenario("bad_prompt_deploy")
        result = score(sc, play_baseline(sc))
        assert result.detected and result.action_correct and result.recovered
        assert result.diagnosis_correct is False  # the baseline does not diagnose

    def test_baseline_is_fooled_by_the_confounding_deploy(self) -> None:
        """With a benign deploy before a provider outage, the baseline rolls back the wrong thing."""
        sc = _scenario("provider_outage_after_benign_deploy")
        result = score(sc, play_baseline(sc))
        assert result.unsafe_actions >= 1 and not result.action_correct and not result.recovered

    def test_baseline_plays_are_deterministic(self) -> None:
        """The same scenario played twice by the baseline gives the same outcome."""
        sc = _scenario("capacity_surge")
        assert play_baseline(sc) == play_baseline(sc)
