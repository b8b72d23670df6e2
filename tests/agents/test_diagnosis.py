"""The deterministic diagnoser names the right cause, service and evidence, and abstains when unsure."""

from __future__ import annotations

from dataclasses import replace

import pytest

from agents.diagnosis import DeterministicDiagnoser
from domain import Cause, ChangeEvidence, ChangeKind, Diagnosis, SeriesEvidence, Signal
from tests.agents import test_diagnosis_fleet as fleet


def diagnose(scenario: fleet.Scenario) -> Diagnosis:
    return fleet.diagnose(scenario)


class TestDemoScenarios:
    def test_bad_prompt_deploy_is_tied_to_the_prompt_change(self) -> None:
        """A prompt change minutes before quality falls and violations/tokens rise is a bad prompt deploy."""
        d = diagnose(fleet.bad_prompt_deploy())
        assert (d.cause, d.service) == (Cause.BAD_PROMPT_DEPLOY, fleet.SC)
        assert d.confidence >= 0.8
        changes = [e for e in d.evidence if isinstance(e, ChangeEvidence)]
        assert [c.change_id for c in changes] == ["chg-1"]
        assert changes[0].seconds_before_onset == 180
        series = {e.signal for e in d.evidence if isinstance(e, SeriesEvidence)}
        assert {Signal.QUALITY_SCORE, Signal.POLICY_VIOLATION_RATE} <= series
        assert all(e.after != e.before for e in d.evidence if isinstance(e, SeriesEvidence))

    def test_provider_outage_names_provider_and_most_affected_service(self) -> None:
        """Errors and latency on every llm-alpha service is provider degradation on llm-alpha."""
        d = diagnose(fleet.provider_outage())
        assert (d.cause, d.provider, d.service) == (Cause.PROVIDER_DEGRADATION, "llm-alpha", fleet.SC)
        assert d.confidence >= 0.8
        assert {e.service for e in d.evidence} == {fleet.SC, fleet.DS}

    def test_one_service_of_the_provider_failing_alone_is_not_the_provider(self) -> None:
        """If only one of the provider's services suffers, provider degradation does not win."""
        scenario = fleet.provider_outage()
        scenario.effects = {k: v for k, v in scenario.effects.items() if k[0] == fleet.SC}
        scenario.anomalies = [a for a in scenario.anomalies if a[0] == fleet.SC]
        d = diagnose(scenario)
        assert d.cause is not Cause.PROVIDER_DEGRADATION or d.provider != "llm-alpha"


@pytest.mark.parametrize(
    ("build", "cause", "service"),
    [
        (fleet.upstream_dependency, Cause.UPSTREAM_DEPENDENCY, fleet.KB),
        (fleet.capacity, Cause.CAPACITY, fleet.DS),
        (fleet.cost_misrouting, Cause.COST_MISROUTING, fleet.DS),
        (fleet.tokenizer_mismatch, Cause.TOKENIZER_MISMATCH, fleet.SC),
        (fleet.bad_model_deploy, Cause.BAD_MODEL_DEPLOY, fleet.SC),
        (fleet.safety_regression_after_prompt, Cause.SAFETY_REGRESSION, fleet.SC),
        (fleet.safety_regression_without_change, Cause.SAFETY_REGRESSION, fleet.KB),
        (fleet.pii_leak, Cause.PII_LEAK, fleet.DS),
        (fleet.data_drift, Cause.DATA_DRIFT, fleet.KB),
    ],
)
def test_each_cause_of_the_taxonomy_is_recognised(build: object, cause: Cause, service: str) -> None:
    """Each cause's typical signal pattern is diagnosed as that cause on the right service."""
    d = diagnose(build())  # type: ignore[operator]
    assert (d.cause, d.service) == (cause, service), d.rationale
    assert d.confidence >= 0.5
    assert d.evidence


class TestConfoundersAndDependencies:
    def test_a_benign_deploy_before_a_provider_outage_is_not_blamed(self) -> None:
        """A model deploy on one llm-alpha service does not explain errors on its undeployed peer."""
        scenario = fleet.provider_outage()
        scenario.changes = [fleet.change(fleet.DS, ChangeKind.MODEL_VERSION, 5)]
        d = diagnose(scenario)
        assert (d.cause, d.provider) == (Cause.PROVIDER_DEGRADATION, "llm-alpha")

    def test_a_bad_change_on_a_callee_is_an_upstream_dependency_with_the_change_as_evidence(self) -> None:
        """When kb-retriever's model change hurts it and support-chat follows, act on kb-retriever."""
        scenario = fleet.upstream_model_regression()
        d = diagnose(scenario)
        assert (d.cause, d.service) == (Cause.UPSTREAM_DEPENDENCY, fleet.KB)
        assert any(isinstance(e, ChangeEvidence) and e.service == fleet.KB for e in d.evidence)

    def test_a_lone_slow_service_on_its_own_provider_is_not_a_provider_outage(self) -> None:
        """Latency alone on the only service of a provider is not enough to blame the provider."""
        d = diagnose(fleet.upstream_dependency())
        assert d.cause is not Cause.PROVIDER_DEGRADATION


class TestAbstention:
    def test_weak_evidence_abstains_with_low_confidence(self) -> None:
        """A 4 % wobble is not a diagnosis: cause unknown, confidence below one half."""
        d = diagnose(fleet.weak_blip())
        assert d.cause is Cause.UNKNOWN
        assert d.confidence < 0.5
        assert "escalate" in d.rationale

    def test_a_stale_change_weighs_less_than_a_fresh_one(self) -> None:
        """A prompt change 50 minutes before onset gives lower confidence than one 3 minutes before."""
        fresh = diagnose(fleet.bad_prompt_deploy())
        stale_scenario = fleet.bad_prompt_deploy()
        stale_scenario.changes = [fleet.change(fleet.SC, ChangeKind.PROMPT_VERSION, 50)]
        stale_scenario.effects[(fleet.SC, Signal.TOKENS_PER_REQUEST)] = 1.0
        stale_scenario.effects[(fleet.SC, Signal.QUALITY_SCORE)] = 0.9
        stale = diagnose(stale_scenario)
        assert stale.confidence < fresh.confidence

    def test_a_change_on_another_service_is_not_blamed(self) -> None:
        """A prompt change on kb-retriever does not explain support-chat's quality drop."""
        scenario = fleet.bad_prompt_deploy()
        scenario.changes = [fleet.change(fleet.KB, ChangeKind.PROMPT_VERSION, 3)]
        d = diagnose(scenario)
        assert not (d.cause is Cause.BAD_PROMPT_DEPLOY and d.service == fleet.KB)


class TestDeterminism:
    def test_same_inputs_give_identical_diagnoses(self) -> None:
        """Two runs over the same telemetry give byte-identical diagnoses."""
        assert diagnose(fleet.provider_outage()) == diagnose(fleet.provider_outage())

    def test_anomaly_order_does_not_matter(self) -> None:
        """Shuffling the incident's anomalies does not change the diagnosis."""
        ctx, _ = fleet.provider_outage().build()
        reversed_ctx = replace(ctx, anomalies=list(reversed(ctx.anomalies)))
        dx = DeterministicDiagnoser()
        assert dx.diagnose(ctx) == dx.diagnose(reversed_ctx)

    def test_alternatives_hold_runner_up_causes_not_the_winner(self) -> None:
        """Alternatives list other causes, best first, never the chosen one."""
        d = diagnose(fleet.tokenizer_mismatch())
        causes = [c for c, _ in d.alternatives]
        assert d.cause not in causes
        confidences = [p for _, p in d.alternatives]
        assert confidences == sorted(confidences, reverse=True)
