"""Actions by verdict and approval waits are read off the audit trail as it is written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from runtime.daemon import AuditMetricsFeed
from runtime.metrics import Metrics

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _decision(verdict: str) -> dict[str, Any]:
    return {"decision": {"verdict": verdict}}


def _approval(approve: bool, so_far: int, required: int) -> dict[str, Any]:
    return {"approval": {"approve": approve}, "approvals_so_far": so_far, "required": required}


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_each_decision_counts_once_under_its_verdict() -> None:
    """Every `decision` record increments homeostat_actions_total for its verdict."""
    metrics = Metrics()
    feed = AuditMetricsFeed(metrics)
    for i, verdict in enumerate(["auto", "approval", "deny", "auto"]):
        feed.observe("decision", _decision(verdict), f"inc-{i}", T0)
    assert _value(metrics, "homeostat_actions_total", verdict="auto") == 2
    assert _value(metrics, "homeostat_actions_total", verdict="approval") == 1
    assert _value(metrics, "homeostat_actions_total", verdict="deny") == 1


def test_approval_wait_ends_only_when_the_approval_is_settled() -> None:
    """A first yes of two required does not end the wait; the second does, measured from the request."""
    metrics = Metrics()
    feed = AuditMetricsFeed(metrics)
    feed.observe("decision", _decision("approval"), "inc-1", T0)
    feed.observe("approval", _approval(True, 1, 2), "inc-1", T0 + timedelta(seconds=30))
    assert _value(metrics, "homeostat_approval_wait_seconds_count", result="approved") == 0
    feed.observe("approval", _approval(True, 2, 2), "inc-1", T0 + timedelta(seconds=90))
    assert _value(metrics, "homeostat_approval_wait_seconds_count", result="approved") == 1
    assert _value(metrics, "homeostat_approval_wait_seconds_sum", result="approved") == 90


def test_rejections_and_timeouts_are_labelled() -> None:
    """A no ends the wait as rejected, an approval_timeout as expired."""
    metrics = Metrics()
    feed = AuditMetricsFeed(metrics)
    feed.observe("decision", _decision("approval"), "inc-1", T0)
    feed.observe("decision", _decision("approval"), "inc-2", T0)
    feed.observe("approval", _approval(False, 0, 1), "inc-1", T0 + timedelta(seconds=5))
    feed.observe("approval_timeout", {"on_timeout": "reject"}, "inc-2", T0 + timedelta(minutes=30))
    assert _value(metrics, "homeostat_approval_wait_seconds_sum", result="rejected") == 5
    assert _value(metrics, "homeostat_approval_wait_seconds_sum", result="expired") == 1800


def test_a_wait_pending_in_the_log_at_start_is_measured_from_its_request() -> None:
    """After a restart the feed is seeded from the log, so the wait spans the restart."""
    metrics = Metrics()
    feed = AuditMetricsFeed(metrics)
    log = [SimpleNamespace(kind="decision", payload=_decision("approval"), incident_id="inc-1", ts=T0)]
    feed.seed(log)
    feed.observe("approval", _approval(True, 1, 1), "inc-1", T0 + timedelta(minutes=10))
    assert _value(metrics, "homeostat_approval_wait_seconds_sum", result="approved") == 600
    assert _value(metrics, "homeostat_actions_total", verdict="approval") == 0  # counters are not replayed


def test_action_results_count_by_outcome_status() -> None:
    """Each `action_result` increments homeostat_action_outcomes_total for its status."""
    metrics = Metrics()
    feed = AuditMetricsFeed(metrics)
    feed.observe("action_result", {"outcome": {"status": "succeeded"}}, "inc-1", T0)
    feed.observe("action_result", {"outcome": {"status": "failed"}}, "inc-2", T0)
    assert _value(metrics, "homeostat_action_outcomes_total", status="succeeded") == 1
    assert _value(metrics, "homeostat_action_outcomes_total", status="failed") == 1
