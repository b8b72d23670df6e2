"""Turning untrusted JSON items into domain values, one at a time.

Every source receives telemetry from outside; a bad item (NaN, a missing field, a naive
timestamp) is rejected on its own with a reason that names where it came from, and the rest
of the batch goes through (DESIGN.md invariant 7: a bad sample never stops the daemon).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from domain import ChangeEvent, Sample
from runtime.detection.intake import SampleBatch

M = TypeVar("M", bound=BaseModel)

#: Longest reason kept per rejection; item text is untrusted and may be huge.
_MAX_REASON = 300


@dataclass(frozen=True, slots=True)
class Rejection:
    """One item a source refused: where it was (``file:line``, ``samples[3]``) and why."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem: ``field.path: message`` (pydantic's input echo left out)."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in item["loc"]) or "(item)"
        parts.append(f"{loc}: {item['msg']}")
    return "; ".join(parts)[:_MAX_REASON]


def parse_item(model: type[M], item: Any, where: str) -> M | Rejection:
    """Validate one JSON item as `model`, or return why not."""
    if not isinstance(item, dict):
        return Rejection(where, f"expected a JSON object, got {type(item).__name__}")
    try:
        return model.model_validate(item)
    except ValidationError as exc:
        return Rejection(where, describe_validation_error(exc))


@dataclass(slots=True)
class ParsedTelemetry:
    samples: list[Sample]
    changes: list[ChangeEvent]
    rejections: list[Rejection]


def parse_telemetry(samples: Iterable[Any], changes: Iterable[Any], where: str = "") -> ParsedTelemetry:
    """Validate ``samples`` and ``changes`` item by item; ``where`` prefixes each rejection."""
    batch = SampleBatch()  # the detection stage reads its columns (series id, unix seconds, value)
    out = ParsedTelemetry(batch, [], [])
    prefix = f"{where}." if where else ""
    for i, item in enumerate(samples):
        parsed = parse_item(Sample, item, f"{prefix}samples[{i}]")
        if isinstance(parsed, Rejection):
            out.rejections.append(parsed)
        else:
            batch.add(parsed)
    for i, item in enumerate(changes):
        parsed_change = parse_item(ChangeEvent, item, f"{prefix}changes[{i}]")
        (out.rejections if isinstance(parsed_change, Rejection) else out.changes).append(parsed_change)  # type: ignore[arg-type]
    return out


class SourceError(Exception):
    """A source could not be read (unreachable server, bad response shape); the guard backs off."""
