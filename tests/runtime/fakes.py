"""A small in-memory `IncidentService` (and audit) for API and CLI tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.ports import ApprovalError, Identity


@dataclass
class FakeIncidentService:
    """Holds incidents as dicts; approve/reject enforce the rules the real service will."""

    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)

    def add(self, incident_id: str, state: str = "awaiting_approval", proposer: str = "homeostat") -> None:
        self.incidents[incident_id] = {
            "id": incident_id,
            "state": state,
            "service": "chat",
            "proposal": {"action": "failover_provider", "target": "openai", "blast_radius": 0.4, "proposer": proposer},
            "decision": {"verdict": "approval", "matched_rules": ["failover-needs-approval"]},
            "approvals": [],
        }

    def list_incidents(self, *, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        items = [i for i in self.incidents.values() if state is None or i["state"] == state]
        return items[:limit]

    def get_incident(self, incident_id: str) -> dict[str, Any] | None:
        return self.incidents.get(incident_id)

    def pending_approvals(self) -> list[dict[str, Any]]:
        return [i for i in self.incidents.values() if i["state"] == "awaiting_approval"]

    def _answer(self, incident_id: str, who: Identity, approve: bool, text: str) -> dict[str, Any]:
        self.audit.append(
            {
                "seq": len(self.audit) + 1,
                "incident": incident_id,
                "kind": "approval_call",
                "who": who.name,
                "approve": approve,
                "text": text,
            }
        )
        incident = self.incidents[incident_id]
        if incident["state"] != "awaiting_approval":
            raise ApprovalError(f"incident {incident_id} is {incident['state']}, not awaiting approval")
        if who.name == incident["proposal"]["proposer"]:
            raise ApprovalError(f"{who.name} proposed this action and cannot approve it")
        incident["approvals"].append({"approver": who.name, "approve": approve, "comment": text})
        incident["state"] = "executing" if approve else "rejected"
        return incident

    def approve(self, incident_id: str, who: Identity, comment: str) -> dict[str, Any]:
        return self._answer(incident_id, who, True, comment)

    def reject(self, incident_id: str, who: Identity, reason: str) -> dict[str, Any]:
        return self._answer(incident_id, who, False, reason)

    def query_audit(
        self, *, incident: str | None, kind: str | None, after_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        rows = [
            r
            for r in self.audit
            if (incident is None or r.get("incident") == incident)
            and (kind is None or r["kind"] == kind)
            and (after_seq is None or r["seq"] > after_seq)
        ]
        return rows[:limit]

    def access_denied(self, *, who: str | None, method: str, path: str, status: int, reason: str) -> None:
        self.audit.append(
            {
                "seq": len(self.audit) + 1,
                "kind": "access_denied",
                "who": who,
                "method": method,
                "path": path,
                "status": status,
                "reason": reason,
            }
        )
