"""The domain vocabulary refuses values that would poison the loop."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from domain import Direction, Sample, bad_direction, canonical_json


def test_sample_rejects_non_finite_values() -> None:
    """A NaN or infinite sample is refused with the field named."""
    with pytest.raises(ValidationError, match="finite"):
        Sample(service="chat", signal="error_rate", ts=datetime(2026, 1, 1, tzinfo=UTC), value=float("nan"))


def test_sample_rejects_naive_timestamps() -> None:
    """Timestamps without a zone are ambiguous and refused."""
    with pytest.raises(ValidationError, match="timezone-aware"):
        Sample(service="chat", signal="error_rate", ts=datetime(2026, 1, 1), value=1.0)


def test_unknown_signals_are_watched_both_ways() -> None:
    """A signal Homeostat does not know gets no assumed bad direction."""
    assert bad_direction("latency_p99_ms") is Direction.UP
    assert bad_direction("quality_score") is Direction.DOWN
    assert bad_direction("my_custom_metric") is Direction.BOTH


def test_canonical_json_is_order_independent() -> None:
    """Two dicts with the same content give the same canonical bytes."""
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
