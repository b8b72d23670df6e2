"""The tools package's public surface is exactly what it declares."""

import tools


def test_all_exports_exist_and_are_sorted() -> None:
    """Every name in __all__ is importable from tools, and the brief's API is all there."""
    for name in tools.__all__:
        assert hasattr(tools, name), name
    assert tools.__all__ == sorted(tools.__all__, key=lambda n: (not n.isupper(), n))
    required = {
        "CATALOG", "ActionSpec", "RecoverySpec", "ActionRequest", "Adapter", "IntentLog", "Guard",
        "GuardConfig", "CallableAdapter", "SimulatorHttpAdapter", "WebhookAdapter", "WebhookTarget",
        "idempotency_key", "PermanentError", "TransientError",
    }  # fmt: skip
    assert required <= set(tools.__all__)
