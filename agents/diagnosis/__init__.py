"""Diagnosers: deterministic (default) and LLM-backed, behind one interface (`agents.ports.Diagnoser`)."""

from .deterministic import DeterministicDiagnoser, Hypothesis, RankedCandidate, ServiceRank, confidence_of
from .shifts import SeriesShift, measure_shifts

__all__ = [
    "DeterministicDiagnoser",
    "Hypothesis",
    "RankedCandidate",
    "SeriesShift",
    "ServiceRank",
    "confidence_of",
    "measure_shifts",
]
