"""Who may answer a pending proposal: invariant 3, as one pure function.

The proposer never approves; an n-approver rule needs n distinct people, each holding one
of the required roles. The API checks this before accepting a request, and the graph checks
it again before counting an approval.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from domain import Approval, ApprovalRequirement, Proposal


class ApprovalRefused(Exception):
    """An answer that must not be counted, with the reason in words."""


@dataclass(frozen=True, slots=True)
class ApprovalTally:
    approvals: int
    required: int
    rejected_by: str | None

    @property
    def granted(self) -> bool:
        return self.rejected_by is None and self.approvals >= self.required


def check_answer(
    answer: Approval,
    proposal: Proposal,
    requirement: ApprovalRequirement,
    prior: Sequence[Approval],
) -> None:
    """Raise ApprovalRefused if `answer` may not be counted towards `requirement`."""
    if answer.approver == proposal.proposer:
        raise ApprovalRefused(f"{answer.approver} proposed this action and cannot also answer it")
    if any(p.approver == answer.approver for p in prior):
        raise ApprovalRefused(f"{answer.approver} has already answered this proposal")
    if not set(answer.roles) & set(requirement.roles):
        raise ApprovalRefused(
            f"{answer.approver} holds roles {sorted(answer.roles)}, "
            f"but this proposal needs one of {sorted(requirement.roles)}"
        )


def tally(answers: Sequence[Approval], requirement: ApprovalRequirement) -> ApprovalTally:
    """Count distinct approvals; any rejection ends the wait."""
    rejected_by = next((a.approver for a in answers if not a.approve), None)
    approvers = {a.approver for a in answers if a.approve}
    return ApprovalTally(approvals=len(approvers), required=requirement.approvers, rejected_by=rejected_by)
