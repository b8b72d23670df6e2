"""Diagnosers: deterministic (default) and LLM-backed, behind one interface (`agents.ports.Diagnoser`)."""

from .deterministic import DeterministicDiagnoser, Hypothesis, ServiceRank, confidence_of
from .shifts import SeriesShift, measure_shifts

__all__ = [
    "DeterministicDiagnoser",
    "Hypothesis",
    "SeriesShift",
    "ServiceRank",
    "confidence_of",
    "measure_shifts",
]
