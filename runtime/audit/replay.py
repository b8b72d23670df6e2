"""Replay: re-derive every recorded policy decision from its recorded inputs and constitution.

For each `decision` record the constitution text recorded (as `constitution_loaded`) with the
same digest is re-parsed, `policies.decide()` is re-run on the recorded proposal and context,
and the result is compared with what was recorded. Anything that does not reproduce is a
divergence: a decision that was altered, a constitution text that was altered or never
recorded, or a policy engine that changed behaviour.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from domain import Decision, Proposal
from domain.canonical import canonical_json, sha256_hex
from policies import Constitution, ConstitutionError, DecisionContext, decide, parse_constitution
from runtime.audit._chain import AuditRecord
from runtime.audit._store import AuditLog


@dataclass(frozen=True, slots=True)
class Divergence:
    """One decision record that replay could not reproduce, and why."""

    seq: int
    incident_id: str | None
    reason: str
    recorded: dict[str, Any] | None = None
    replayed: dict[str, Any] | None = None

    def differing_fields(self) -> list[str]:
        """Top-level Decision fields whose recorded and replayed values differ."""
        if self.recorded is None or self.replayed is None:
            return []
        keys = sorted(set(self.recorded) | set(self.replayed))
        return [k for k in keys if self.recorded.get(k) != self.replayed.get(k)]


@dataclass(slots=True)
class ReplayReport:
    """How many decisions were re-derived, and every one that did not reproduce."""

    decisions: int = 0
    reproduced: int = 0
    constitutions: int = 0
    divergences: list[Divergence] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences


@dataclass(frozen=True, slots=True)
class _RecordedConstitution:
    seq: int
    constitution: Constitution | None
    problem: str | None


def _load_constitutions(log: AuditLog) -> dict[str, _RecordedConstitution]:
    """Every constitution_loaded record by digest, parsed (or why it cannot be)."""
    found: dict[str, _RecordedConstitution] = {}
    for rec in log.records(kind="constitution_loaded"):
        p = rec.payload
        digest, text, source = p.get("digest"), p.get("text"), p.get("source", "constitution.yaml")
        if not isinstance(digest, str) or not isinstance(text, str):
            continue  # nothing replay can use; a decision citing it will report the missing text
        if digest in found and found[digest].constitution is not None:
            continue
        if sha256_hex(text) != digest:
            found[digest] = _RecordedConstitution(
                rec.seq, None, f"the constitution text recorded at seq {rec.seq} does not hash to its digest"
            )
            continue
        try:
            found[digest] = _RecordedConstitution(rec.seq, parse_constitution(text, str(source)), None)
        except ConstitutionError as exc:
            found[digest] = _RecordedConstitution(
                rec.seq, None, f"the constitution recorded at seq {rec.seq} no longer parses: {exc}"
            )
    return found


def _replay_one(rec: AuditRecord, constitutions: dict[str, _RecordedConstitution]) -> Divergence | None:
    p = rec.payload
    missing = [k for k in ("proposal", "context", "decision") if k not in p]
    if missing:
        return Divergence(rec.seq, rec.incident_id, f"decision payload lacks {', '.join(missing)}")
    recorded = p["decision"]
    digest = p.get("constitution_digest") or (
        recorded.get("constitution_digest") if isinstance(recorded, dict) else None
    )
    if not isinstance(digest, str):
        return Divergence(rec.seq, rec.incident_id, "decision payload names no constitution_digest")
    entry = constitutions.get(digest)
    if entry is None:
        return Divergence(rec.seq, rec.incident_id, f"no constitution_loaded record with digest {digest[:12]}…")
    if entry.constitution is None:
        return Divergence(rec.seq, rec.incident_id, entry.problem or "constitution unusable")
    try:
        proposal = Proposal.model_validate(p["proposal"])
        context = DecisionContext.model_validate(p["context"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        return Divergence(rec.seq, rec.incident_id, f"recorded inputs are invalid at {where}: {first['msg']}")
    replayed: Decision = decide(proposal, context, entry.constitution)
    replayed_json = replayed.model_dump(mode="json")
    if not isinstance(recorded, dict) or canonical_json(recorded) != canonical_json(replayed_json):
        return Divergence(
            rec.seq,
            rec.incident_id,
            "the recorded decision differs from the one its inputs and constitution give",
            recorded if isinstance(recorded, dict) else {"value": recorded},
            replayed_json,
        )
    return None


def replay(log: AuditLog, *, on_divergence: Callable[[Divergence], None] | None = None) -> ReplayReport:
    """Re-derive every decision in `log`; streams the decisions, holding only the constitutions."""
    constitutions = _load_constitutions(log)
    report = ReplayReport(constitutions=len(constitutions))
    for rec in log.records(kind="decision"):
        report.decisions += 1
        divergence = _replay_one(rec, constitutions)
        if divergence is None:
            report.reproduced += 1
        else:
            report.divergences.append(divergence)
            if on_divergence is not None:
                on_divergence(divergence)
    return report
