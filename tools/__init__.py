"""Contained remediation: the action catalog, adapters to targets, and the guard that runs them.

The agent proposes; tools act. Containment lives here: typed parameters, allow-lists,
idempotency keys, a write-ahead intent before every call, and reconciliation after restarts.
"""

from tools._catalog import (
    CATALOG,
    ActionParams,
    ActionSpec,
    EscalateParams,
    ExpectedCost,
    FailoverProviderParams,
    InverseAction,
    PurgeContextCacheParams,
    RecoverySpec,
    RevertRoutingParams,
    RollbackModelVersionParams,
    RollbackPromptVersionParams,
    ThrottleParams,
    TriggerRetrainingParams,
    spec_for,
)
from tools._errors import ParameterError, PermanentError, TransientError
from tools._guard import (
    ActionRequest,
    Adapter,
    CallableAdapter,
    Guard,
    GuardConfig,
    InMemoryIntentLog,
    IntentLog,
    RetryPolicy,
    idempotency_key,
)
from tools._http import SecretRef, SimulatorHttpAdapter, WebhookAdapter, WebhookTarget
from tools.verification import RecoveryVerdict, SeriesCheck, evaluate_recovery

__all__ = [
    "CATALOG",
    "ActionParams",
    "ActionRequest",
    "ActionSpec",
    "Adapter",
    "CallableAdapter",
    "EscalateParams",
    "ExpectedCost",
    "FailoverProviderParams",
    "Guard",
    "GuardConfig",
    "InMemoryIntentLog",
    "IntentLog",
    "InverseAction",
    "ParameterError",
    "PermanentError",
    "PurgeContextCacheParams",
    "RecoverySpec",
    "RecoveryVerdict",
    "RetryPolicy",
    "RevertRoutingParams",
    "RollbackModelVersionParams",
    "RollbackPromptVersionParams",
    "SecretRef",
    "SeriesCheck",
    "SimulatorHttpAdapter",
    "ThrottleParams",
    "TransientError",
    "TriggerRetrainingParams",
    "WebhookAdapter",
    "WebhookTarget",
    "evaluate_recovery",
    "idempotency_key",
    "spec_for",
]
