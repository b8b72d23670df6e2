"""Replay: re-derive every recorded policy decision from its recorded inputs and constitution.

For each `decision` record the constitution text recorded (as `constitution_loaded`) with the
same digest is re-parsed, `policies.decide()` is re-run on the recorded proposal and context,
and the result is compared with what was recorded (every field but `engine_version`).

A decision that does not reproduce is classified by the policy engine version stamped on it:
- stamped by this engine (`POLICY_ENGINE_VERSION`): a divergence. The same code on the same
  inputs must give the same answer, so the record, its inputs or its constitution were altered
  (or the engine is not deterministic: a bug). Also a divergence: a constitution text that was
  altered or never recorded, or inputs that no longer parse.
- stamped by another engine version, or by none (logs written before decisions were stamped):
  an engine change. The rules may have moved on (the flap guard, say); this is reported
  separately with the fields that differ, and is a failure only when the caller asks for strict.

The version stamp is trusted as far as the chain is: run `audit verify` (with the HMAC key, so a
re-forged chain is caught) before relying on the split.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from domain import Decision, Proposal
from domain.canonical import canonical_json, sha256_hex
from policies import Constitution, ConstitutionError, DecisionContext, decide, parse_constitution
from policies.decide import POLICY_ENGINE_VERSION
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
        """Top-level Decision fields (besides the version stamp) whose recorded and replayed values differ."""
        return _differing(self.recorded, self.replayed)


_VERSION_FIELD = "engine_version"


def _differing(recorded: dict[str, Any] | None, replayed: dict[str, Any] | None) -> list[str]:
    if recorded is None or replayed is None:
        return []
    keys = sorted((set(recorded) | set(replayed)) - {_VERSION_FIELD})
    return [k for k in keys if recorded.get(k) != replayed.get(k)]


@dataclass(frozen=True, slots=True)
class EngineChange:
    """A decision recorded by another policy engine version (or unstamped) that today's engine decides differently."""

    seq: int
    incident_id: str | None
    recorded_version: str | None  # None: written before decisions were stamped
    replayed_version: str
    recorded: dict[str, Any]
    replayed: dict[str, Any]

    def differing_fields(self) -> list[str]:
        """Top-level Decision fields (besides the version stamp) whose recorded and replayed values differ."""
        return _differing(self.recorded, self.replayed)

    @property
    def reason(self) -> str:
        by = f"engine {self.recorded_version}" if self.recorded_version else "an engine older than version stamps"
        return f"recorded by {by}; engine {self.replayed_version} decides it differently"


@dataclass(slots=True)
class ReplayReport:
    """How many decisions were re-derived, every one that diverged, and every one an engine change explains."""

    decisions: int = 0
    reproduced: int = 0
    constitutions: int = 0
    divergences: list[Divergence] = field(default_factory=list)
    engine_changes: list[EngineChange] = field(default_factory=list)
    engine_version: str = POLICY_ENGINE_VERSION
    recorded_versions: dict[str, int] = field(default_factory=dict)  # stamp ("unstamped" for None) -> decisions

    @property
    def ok(self) -> bool:
        """No divergence: engine changes alone do not fail a replay."""
        return not self.divergences

    @property
    def strict_ok(self) -> bool:
        """Every decision reproduced exactly: no divergence and no engine change."""
        return not self.divergences and not self.engine_changes


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


def _replay_one(rec: AuditRecord, constitutions: dict[str, _RecordedConstitution]) -> Divergence | EngineChange | None:
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
    if not isinstance(recorded, dict):
        return Divergence(
            rec.seq,
            rec.incident_id,
            "the recorded decision is not an object",
            {"value": recorded},
            replayed_json,
        )
    if _unstamped(recorded) == _unstamped(replayed_json):
        return None
    version = recorded.get(_VERSION_FIELD)
    if version is not None and not isinstance(version, str):
        return Divergence(
            rec.seq, rec.incident_id, f"recorded engine_version is not a string: {version!r}", recorded, replayed_json
        )
    if version == POLICY_ENGINE_VERSION:
        return Divergence(
            rec.seq,
            rec.incident_id,
            f"the recorded decision differs from the one its inputs and constitution give under the same"
            f" policy engine ({version}) that recorded it",
            recorded,
            replayed_json,
        )
    return EngineChange(rec.seq, rec.incident_id, version, POLICY_ENGINE_VERSION, recorded, replayed_json)


def _unstamped(decision: dict[str, Any]) -> str:
    """The decision's canonical JSON without its engine version stamp."""
    return canonical_json({k: v for k, v in decision.items() if k != _VERSION_FIELD})


def replay(
    log: AuditLog,
    *,
    on_divergence: Callable[[Divergence], None] | None = None,
    on_engine_change: Callable[[EngineChange], None] | None = None,
) -> ReplayReport:
    """Re-derive every decision in `log`; streams the decisions, holding only the constitutions."""
    constitutions = _load_constitutions(log)
    report = ReplayReport(constitutions=len(constitutions))
    for rec in log.records(kind="decision"):
        report.decisions += 1
        recorded = rec.payload.get("decision")
        stamp = recorded.get(_VERSION_FIELD) if isinstance(recorded, dict) else None
        key = stamp if isinstance(stamp, str) else "unstamped"
        report.recorded_versions[key] = report.recorded_versions.get(key, 0) + 1
        outcome = _replay_one(rec, constitutions)
        if outcome is None:
            report.reproduced += 1
        elif isinstance(outcome, EngineChange):
            report.engine_changes.append(outcome)
            if on_engine_change is not None:
                on_engine_change(outcome)
        else:
            report.divergences.append(outcome)
            if on_divergence is not None:
                on_divergence(outcome)
    return report
