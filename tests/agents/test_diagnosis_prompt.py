"""A prompt change followed by policy violations: a bad prompt when the output moved with them, a
safety regression when only the violations did (both roll the prompt back)."""

from __future__ import annotations

from agents.diagnosis.deterministic import lean
from agents.remedies import propose
from domain import ActionName, Cause, ChangeKind, Signal
from tests.agents import test_diagnosis_fleet as fleet


def violations_after_prompt(**output: float) -> fleet.Scenario:
    """support-chat's policy violations jump 8x after a prompt change 3 min before onset; `output`
    multiplies tokens/request and quality as well."""
    effects = {(fleet.SC, Signal.POLICY_VIOLATION_RATE): 8.0}
    effects.update({(fleet.SC, Signal(name)): factor for name, factor in output.items()})
    return fleet.Scenario(
        effects=effects,
        changes=[fleet.change(fleet.SC, ChangeKind.PROMPT_VERSION, 3)],
        anomalies=[(fleet.SC, Signal.POLICY_VIOLATION_RATE, fleet.UP)],
    )


class TestPromptChangeWithViolations:
    def test_violations_with_output_leaning_the_deploys_way_are_a_bad_prompt_deploy(self) -> None:
        """Tokens/request up 12 % (below the symptom threshold) with the violations: the rollout is
        still building, and the new prompt is to blame as a bad deploy."""
        d = fleet.diagnose(violations_after_prompt(tokens_per_request=1.12))
        assert (d.cause, d.service) == (Cause.BAD_PROMPT_DEPLOY, fleet.SC), d.rationale

    def test_shorter_outputs_lean_the_same_way(self) -> None:
        """A prompt that shortens answers (tokens/request down 12 %) counts like one that lengthens them."""
        d = fleet.diagnose(violations_after_prompt(tokens_per_request=0.88))
        assert d.cause is Cause.BAD_PROMPT_DEPLOY, d.rationale

    def test_violations_alone_after_a_prompt_change_stay_a_safety_regression(self) -> None:
        """With tokens and quality flat, the prompt only loosened guardrails: a safety regression."""
        d = fleet.diagnose(violations_after_prompt())
        assert (d.cause, d.service) == (Cause.SAFETY_REGRESSION, fleet.SC), d.rationale

    def test_both_readings_roll_the_prompt_back(self) -> None:
        """Either way the remedy is the same: the prompt change is rolled back."""
        for scenario in (violations_after_prompt(), violations_after_prompt(tokens_per_request=1.12)):
            ctx, _ = scenario.build()
            proposal = propose(fleet.diagnose(scenario), ctx.telemetry.topology())
            assert (proposal.action, proposal.target) == (ActionName.ROLLBACK_PROMPT_VERSION, fleet.SC)


def test_lean_grows_from_one_and_a_half_to_three_spreads() -> None:
    """Below 1.5 spreads a series held; from 3 spreads on it is a full symptom."""
    assert (lean(1.0), lean(1.5), lean(2.25), lean(3.0), lean(40.0)) == (0.0, 0.0, 0.5, 1.0, 1.0)
