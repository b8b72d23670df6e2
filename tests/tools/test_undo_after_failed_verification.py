"""A wrong remediation fails verification, and its inverse undoes it through the same guard."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain import ActionName, ActionOutcome, OutcomeStatus, ServiceInfo, Topology
from tools import (
    CATALOG,
    ActionRequest,
    CallableAdapter,
    Guard,
    GuardConfig,
    InMemoryIntentLog,
    evaluate_recovery,
    idempotency_key,
)


@dataclass
class TinyFleet:
    """One service whose quality depends on its model version; routing changes do not help it."""

    info: ServiceInfo
    applied: dict[str, ActionRequest] = field(default_factory=dict)

    def quality(self) -> float:
        return 0.9 if self.info.model_version == "m1" else 0.6

    def call(self, req: ActionRequest) -> ActionOutcome:
        if req.idempotency_key not in self.applied:
            self.applied[req.idempotency_key] = req
            i = self.info
            if req.action is ActionName.REVERT_ROUTING:
                self.info = i.model_copy(update={"routing": i.previous_routing, "previous_routing": i.routing})
            elif req.action is ActionName.ROLLBACK_MODEL_VERSION:
                self.info = i.model_copy(
                    update={"model_version": i.previous_model_version, "previous_model_version": i.model_version}
                )
        return ActionOutcome(status=OutcomeStatus.SUCCEEDED, idempotency_key=req.idempotency_key, detail="applied")

    def lookup(self, key: str) -> ActionOutcome | None:
        return None if key not in self.applied else self.call(self.applied[key])

    def topology(self) -> Topology:
        return Topology(services={"chat": self.info})


def test_wrong_remedy_fails_verification_and_its_inverse_restores_the_service() -> None:
    """Reverting routing for a bad model leaves quality low; verify says so; the inverse runs and is logged."""
    fleet = TinyFleet(
        ServiceInfo(
            name="chat",
            provider="p",
            model_version="m2",
            previous_model_version="m1",
            prompt_version="x",
            routing="cheap",
            previous_routing="default",
            traffic_share=0.4,
        )
    )
    log = InMemoryIntentLog()
    guard = Guard(CallableAdapter(fleet.call, fleet.lookup), log, GuardConfig(allow={a: ["chat"] for a in ActionName}))
    spec = CATALOG[ActionName.REVERT_ROUTING]
    before = fleet.topology()
    assert spec.preconditions(before, "chat", {}) == []

    wrong = ActionRequest(
        action=ActionName.REVERT_ROUTING,
        target="chat",
        incident_id="inc-9",
        idempotency_key=idempotency_key("inc-9", ActionName.REVERT_ROUTING, "chat"),
    )
    assert guard.execute(wrong).status is OutcomeStatus.SUCCEEDED
    verdict = evaluate_recovery(
        spec.recovery, {"chat/quality_score": [0.9, 0.91, 0.89]}, {"chat/quality_score": [fleet.quality()]}
    )
    assert not verdict.recovered

    inverse = spec.inverse_for(before, "chat", {})
    assert inverse is not None
    assert CATALOG[inverse.action].preconditions(fleet.topology(), inverse.target, inverse.parameters) == []
    undo = ActionRequest(
        action=inverse.action,
        target=inverse.target,
        parameters=inverse.parameters,
        incident_id="inc-9",
        idempotency_key=idempotency_key("inc-9", inverse.action, inverse.target, attempt=1),
    )
    assert guard.execute(undo).status is OutcomeStatus.SUCCEEDED
    assert fleet.info.routing == "cheap"
    assert [kind for kind, _ in log.events] == ["intent", "result", "intent", "result"]
    assert log.result_for(undo.idempotency_key) is not None
