"""The daemon's HTTP API: `create_app` builds the FastAPI app over the loop's seams."""

from runtime.api.app import ApproveRequest, RejectRequest, create_app
from runtime.api.ports import AccessAudit, AuditQuery, DaemonStatus, Readiness, StatusProvider

__all__ = [
    "AccessAudit",
    "ApproveRequest",
    "AuditQuery",
    "DaemonStatus",
    "Readiness",
    "RejectRequest",
    "StatusProvider",
    "create_app",
]
