"""The shipped constitution.yaml says what the demo and operators rely on (issue 2's rules)."""

from __future__ import annotations

import pytest

from domain import ActionName, Cause, OnTimeout, Verdict
from policies import DecisionContext, decide, load_constitution
from tests.policies.helpers import SHIPPED, T0, proposal

CONSTITUTION = load_constitution(SHIPPED)
NOW = DecisionContext(now=T0)

DEMO_SERVICES = ["support-chat", "doc-summarizer", "kb-retriever", "llm-alpha", "llm-beta"]


@pytest.mark.parametrize(
    ("action", "service", "cause", "confidence", "reversible", "verdict", "approvers"),
    [
        # rollbacks after a bad deploy with confidence >= 0.8 run on their own
        ("rollback_prompt_version", "support-chat", "bad_prompt_deploy", 0.8, True, Verdict.AUTO, None),
        ("rollback_prompt_version", "doc-summarizer", "bad_prompt_deploy", 0.95, True, Verdict.AUTO, None),
        ("rollback_model_version", "kb-retriever", "bad_model_deploy", 0.9, True, Verdict.AUTO, None),
        ("rollback_model_version", "support-chat", "tokenizer_mismatch", 0.85, True, Verdict.AUTO, None),
        # ... but not below 0.8, nor for other causes
        ("rollback_prompt_version", "support-chat", "bad_prompt_deploy", 0.79, True, Verdict.APPROVAL, 1),
        ("rollback_model_version", "support-chat", "data_drift", 0.95, True, Verdict.APPROVAL, 1),
        # failover needs one approver, retraining two
        ("failover_provider", "support-chat", "provider_degradation", 0.99, True, Verdict.APPROVAL, 1),
        ("trigger_retraining", "kb-retriever", "data_drift", 0.9, False, Verdict.APPROVAL, 2),
        # escalate always runs: it pages a human and changes nothing
        ("escalate", "support-chat", "unknown", 0.1, True, Verdict.AUTO, None),
        ("escalate", "doc-summarizer", "pii_leak", 0.99, False, Verdict.AUTO, None),
        # anything on a protected service is denied, even a confident rollback
        ("rollback_prompt_version", "payments-api", "bad_prompt_deploy", 0.99, True, Verdict.DENY, None),
        ("failover_provider", "ledger-regulated", "provider_degradation", 0.9, True, Verdict.DENY, None),
        ("escalate", "payments-gateway", "unknown", 0.2, True, Verdict.DENY, None),
        # the default for the rest is approval
        ("revert_routing", "support-chat", "cost_misrouting", 0.9, True, Verdict.APPROVAL, 1),
        ("purge_context_cache", "support-chat", "pii_leak", 0.9, False, Verdict.APPROVAL, 1),
    ],
)
def test_decision_table(  # noqa: PLR0917 - pytest passes each table column as a positional argument
    action, service, cause, confidence, reversible, verdict, approvers
) -> None:
    """Each row is a proposal the shipped constitution must decide exactly this way."""
    p = proposal(ActionName(action), service, cause=Cause(cause), confidence=confidence, reversible=reversible)
    decision = decide(p, NOW, CONSTITUTION)
    assert decision.verdict is verdict, decision.reasons
    if approvers is None:
        assert decision.approval is None
    else:
        assert decision.approval is not None
        assert decision.approval.approvers == approvers
    assert decision.constitution_digest == CONSTITUTION.digest
    assert decision.reasons


def test_failover_approval_escalates_on_timeout() -> None:
    """A failover nobody answers escalates instead of silently dying."""
    d = decide(
        proposal(ActionName.FAILOVER_PROVIDER, target="llm-alpha", cause=Cause.PROVIDER_DEGRADATION), NOW, CONSTITUTION
    )
    assert d.approval is not None and d.approval.on_timeout is OnTimeout.ESCALATE
    assert d.matched_rules == ("failover-needs-one-approver",)


@pytest.mark.parametrize("service", DEMO_SERVICES)
def test_demo_fleet_is_not_protected(service: str) -> None:
    """No demo service or provider matches the deny pattern, so the demo can act on them."""
    d = decide(proposal(service=service), NOW, CONSTITUTION)
    assert "protected-services-denied" not in d.matched_rules
    assert d.verdict is Verdict.AUTO


def test_principles_are_sentences() -> None:
    """The principles handed to the LLM diagnoser are non-empty sentences."""
    assert len(CONSTITUTION.principles) >= 3
    assert all(p.strip().endswith(".") for p in CONSTITUTION.principles)
