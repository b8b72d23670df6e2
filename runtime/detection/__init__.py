"""Detection: the streaming stage that turns samples into anomalies (one per shift, per series).

Public API: `DetectionEngine`, `DetectionConfig`, `load_detection_config`, `config_from_dict`,
`DetectionConfigError`, `SnapshotError`.
"""

from runtime.detection.config import (
    BudgetSpec,
    DetectionConfig,
    DetectionConfigError,
    SignalPolicy,
    config_from_dict,
    load_detection_config,
)
from runtime.detection.engine import DetectionEngine, SnapshotError

__all__ = [
    "BudgetSpec",
    "DetectionConfig",
    "DetectionConfigError",
    "DetectionEngine",
    "SignalPolicy",
    "SnapshotError",
    "config_from_dict",
    "load_detection_config",
]
