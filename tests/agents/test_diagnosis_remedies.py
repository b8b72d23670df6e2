"""Diagnoses that lead to safe remedies: capacity is not a provider outage, local symptoms stay
local, a PII leak purges the cache, and an upstream regression is undone on the callee."""

from __future__ import annotations

from agents.remedies import propose
from domain import ActionName, Cause, Diagnosis, Signal
from tests.agents import test_diagnosis_fleet as fleet


def diagnose(scenario: fleet.Scenario) -> Diagnosis:
    return fleet.diagnose(scenario)


def support_chat_overload(**extra: dict[tuple[str, str], float]) -> fleet.Scenario:
    """support-chat's own traffic climbs and its queue and latency tail follow."""
    effects = {
        (fleet.SC, Signal.REQUEST_RATE): 2.3,
        (fleet.SC, Signal.QUEUE_DEPTH): 6.0,
        (fleet.SC, Signal.LATENCY_P50_MS): 1.3,
        (fleet.SC, Signal.LATENCY_P95_MS): 1.8,
        (fleet.SC, Signal.LATENCY_P99_MS): 2.0,
    }
    return fleet.Scenario(
        effects=effects,
        additive=dict(extra.get("additive", {})),
        anomalies=[(fleet.SC, Signal.LATENCY_P95_MS, fleet.UP)],
    )


def early_overload() -> fleet.Scenario:
    """Minutes into a gradual overload of support-chat: traffic +25 %, latency tail +20 %."""
    return fleet.Scenario(
        effects={
            (fleet.SC, Signal.REQUEST_RATE): 1.25,
            (fleet.SC, Signal.LATENCY_P95_MS): 1.2,
            (fleet.SC, Signal.LATENCY_P99_MS): 1.2,
        },
        anomalies=[(fleet.SC, Signal.LATENCY_P95_MS, fleet.UP)],
    )


class TestCapacityIsNotAProviderOutage:
    def test_overload_with_a_stray_error_on_a_peer_is_capacity(self) -> None:
        """Latency that climbed with the service's own traffic, plus a 0.3 % error blip on a provider
        peer, is capacity on that service: no failover."""
        scenario = support_chat_overload(additive={(fleet.DS, Signal.ERROR_RATE): 0.003})
        d = diagnose(scenario)
        assert (d.cause, d.service) == (Cause.CAPACITY, fleet.SC), d.rationale
        ctx, _ = scenario.build()
        assert propose(d, ctx.telemetry.topology()).action is ActionName.THROTTLE

    def test_early_overload_with_a_stray_error_on_a_peer_never_fails_over(self) -> None:
        """Minutes into a gradual overload (traffic +25 %, latency +20 %) a 0.3 % error blip on a
        provider peer does not make it a provider outage: no failover is proposed."""
        scenario = early_overload()
        scenario.additive = {(fleet.DS, Signal.ERROR_RATE): 0.003}
        d = diagnose(scenario)
        assert d.cause is not Cause.PROVIDER_DEGRADATION, d.rationale
        ctx, _ = scenario.build()
        assert propose(d, ctx.telemetry.topology()).action is not ActionName.FAILOVER_PROVIDER

    def test_a_real_provider_outage_still_fails_over(self) -> None:
        """Errors up by whole percentage points on every llm-alpha service is still the provider."""
        d = diagnose(fleet.provider_outage())
        assert (d.cause, d.provider) == (Cause.PROVIDER_DEGRADATION, "llm-alpha")
        ctx, _ = fleet.provider_outage().build()
        proposal = propose(d, ctx.telemetry.topology())
        assert (proposal.action, proposal.target) == (ActionName.FAILOVER_PROVIDER, "llm-alpha")


class TestLocalSymptomsStayLocal:
    def test_policy_violations_on_a_callee_do_not_explain_a_callers_overload(self) -> None:
        """Noisy policy violations on kb-retriever do not steal support-chat's latency incident."""
        scenario = early_overload()
        scenario.additive = {(fleet.KB, Signal.POLICY_VIOLATION_RATE): 0.05}
        d = diagnose(scenario)
        assert fleet.KB not in {d.service, *[e.service for e in d.evidence]}, d.rationale
        assert d.cause is not Cause.SAFETY_REGRESSION

    def test_policy_violations_on_the_incident_service_are_still_a_safety_regression(self) -> None:
        """When the incident is about kb-retriever's own violations, they are its safety regression."""
        d = diagnose(fleet.safety_regression_without_change())
        assert (d.cause, d.service) == (Cause.SAFETY_REGRESSION, fleet.KB)


class TestRemedies:
    def test_a_pii_leak_purges_the_context_cache_through_approval(self) -> None:
        """PII alerts lead to purging the service's context cache, an irreversible action a person approves."""
        scenario = fleet.pii_leak()
        d = diagnose(scenario)
        ctx, _ = scenario.build()
        proposal = propose(d, ctx.telemetry.topology())
        assert (proposal.action, proposal.target) == (ActionName.PURGE_CONTEXT_CACHE, fleet.DS)
        assert proposal.reversible is False
        assert "never handled silently" in proposal.expected_effect

    def test_an_upstream_regression_is_rolled_back_on_the_callee(self) -> None:
        """A model change that degraded kb-retriever, with support-chat following, rolls back kb-retriever."""
        scenario = fleet.upstream_model_regression()
        d = diagnose(scenario)
        assert (d.cause, d.service) == (Cause.UPSTREAM_DEPENDENCY, fleet.KB)
        ctx, _ = scenario.build()
        proposal = propose(d, ctx.telemetry.topology())
        assert (proposal.action, proposal.target) == (ActionName.ROLLBACK_MODEL_VERSION, fleet.KB)

    def test_an_upstream_slowdown_without_a_change_is_escalated(self) -> None:
        """A slow callee with nothing to roll back goes to a human."""
        d = diagnose(fleet.upstream_dependency())
        assert (d.cause, d.service) == (Cause.UPSTREAM_DEPENDENCY, fleet.KB)
        ctx, _ = fleet.upstream_dependency().build()
        assert propose(d, ctx.telemetry.topology()).action is ActionName.ESCALATE
