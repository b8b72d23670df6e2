"""Backtest: re-decide recorded proposals under a candidate constitution and report what would change.

Pure: takes decisions already read from the audit log (`RecordedDecision.from_payload`) and a
parsed constitution. Each proposal is re-decided with the context recorded with it (same
`now`, same recent actions), so only the rules differ. A limitation worth knowing: the
recent actions are those that really happened; a stricter candidate that would have stopped
an earlier automatic action does not shrink later budgets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from domain import Decision, Proposal
from policies.constitution import Constitution
from policies.decide import DecisionContext, decide


@dataclass(frozen=True)
class RecordedDecision:
    """One decision as the audit log holds it: the proposal, its context, and what was decided."""

    ref: str
    proposal: Proposal
    context: DecisionContext
    decision: Decision
    constitution_digest: str
    incident_id: str | None = None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], ref: str, incident_id: str | None = None) -> RecordedDecision:
        """Parse a `decision` audit payload; a malformed one raises ValueError naming `ref` and the key."""
        missing = [k for k in ("proposal", "context", "decision") if k not in payload]
        if missing:
            raise ValueError(f"{ref}: decision payload lacks {', '.join(missing)}")
        try:
            proposal = Proposal.model_validate(payload["proposal"])
            context = DecisionContext.model_validate(payload["context"])
            decision = Decision.model_validate(payload["decision"])
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{ref}: invalid decision payload at {where}: {first['msg']}") from exc
        digest = str(payload.get("constitution_digest", decision.constitution_digest))
        return cls(ref, proposal, context, decision, digest, incident_id)


@dataclass(frozen=True)
class DecisionChange:
    """A recorded decision that the candidate constitution would decide differently."""

    record: RecordedDecision
    new: Decision

    @property
    def old(self) -> Decision:
        return self.record.decision

    @property
    def verdict_changed(self) -> bool:
        return self.old.verdict is not self.new.verdict

    def describe(self) -> str:
        p = self.record.proposal
        head = f"{self.record.ref}: {p.action.value} on {p.target} ({p.service}, {p.cause.value} @ {p.confidence:g})"
        old_rules = ", ".join(self.old.matched_rules) or "default"
        new_rules = ", ".join(self.new.matched_rules) or "default"
        return f"{head}: {_verdict_text(self.old)} [{old_rules}] -> {_verdict_text(self.new)} [{new_rules}]"


def _verdict_text(decision: Decision) -> str:
    if decision.approval is None:
        return decision.verdict.value
    a = decision.approval
    return (
        f"{decision.verdict.value}(approvers={a.approvers}, roles={'/'.join(a.roles)},"
        f" timeout={a.timeout_s:g}s, on_timeout={a.on_timeout.value})"
    )


def _outcome(decision: Decision) -> tuple[Any, ...]:
    """What a decision does (verdict and approval terms), ignoring wording and the digest."""
    return (decision.verdict, decision.approval)


@dataclass(frozen=True)
class BacktestReport:
    """What the candidate would change: every differing decision and per-rule / per-verdict counts."""

    candidate_digest: str
    total: int
    changes: tuple[DecisionChange, ...]
    rule_hits_before: Mapping[str, int] = field(default_factory=dict)
    rule_hits_after: Mapping[str, int] = field(default_factory=dict)
    verdicts_before: Mapping[str, int] = field(default_factory=dict)
    verdicts_after: Mapping[str, int] = field(default_factory=dict)

    @property
    def unchanged(self) -> int:
        return self.total - len(self.changes)

    def rule_rows(self) -> list[tuple[str, int, int]]:
        """(rule id, decisions it matched before, after), every rule named on either side, sorted."""
        names = sorted(set(self.rule_hits_before) | set(self.rule_hits_after))
        return [(n, self.rule_hits_before.get(n, 0), self.rule_hits_after.get(n, 0)) for n in names]


DEFAULT_RULE = "(default)"


def backtest(records: Iterable[RecordedDecision], candidate: Constitution) -> BacktestReport:
    """Re-decide every recorded proposal under `candidate`; list those whose verdict or approval terms differ."""
    total = 0
    changes: list[DecisionChange] = []
    before: Counter[str] = Counter()
    after: Counter[str] = Counter()
    verdicts_before: Counter[str] = Counter()
    verdicts_after: Counter[str] = Counter()
    for record in records:
        total += 1
        new = decide(record.proposal, record.context, candidate)
        for rule_id in record.decision.matched_rules or (DEFAULT_RULE,):
            before[rule_id] += 1
        for rule_id in new.matched_rules or (DEFAULT_RULE,):
            after[rule_id] += 1
        verdicts_before[record.decision.verdict.value] += 1
        verdicts_after[new.verdict.value] += 1
        if _outcome(new) != _outcome(record.decision):
            changes.append(DecisionChange(record, new))
    return BacktestReport(
        candidate_digest=candidate.digest,
        total=total,
        changes=tuple(changes),
        rule_hits_before=dict(before),
        rule_hits_after=dict(after),
        verdicts_before=dict(verdicts_before),
        verdicts_after=dict(verdicts_after),
    )
