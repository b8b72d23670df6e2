"""Builders shared by the policy tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain import ActionName, Cause, Proposal

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "constitution.yaml"
T0 = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)  # a Wednesday


def proposal(
    action: ActionName | str = ActionName.ROLLBACK_PROMPT_VERSION,
    service: str = "support-chat",
    *,
    target: str | None = None,
    cause: Cause | str = Cause.BAD_PROMPT_DEPLOY,
    confidence: float = 0.9,
    blast_radius: float = 0.3,
    reversible: bool = True,
    **extra: Any,
) -> Proposal:
    return Proposal(
        action=ActionName(action),
        target=target if target is not None else service,
        service=service,
        cause=Cause(cause),
        confidence=confidence,
        blast_radius=blast_radius,
        reversible=reversible,
        **extra,
    )
