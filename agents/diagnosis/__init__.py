"""Diagnosers: deterministic (default) and LLM-backed, behind one interface (`agents.ports.Diagnoser`)."""

from .deterministic import DeterministicDiagnoser, Hypothesis, RankedCandidate, ServiceRank, confidence_of
from .llm import LLMAnswerError, LLMDiagnoser, build_openai_compatible_model, telemetry_tools
from .shifts import SeriesShift, measure_shifts

__all__ = [
    "DeterministicDiagnoser",
    "Hypothesis",
    "LLMAnswerError",
    "LLMDiagnoser",
    "RankedCandidate",
    "SeriesShift",
    "ServiceRank",
    "build_openai_compatible_model",
    "confidence_of",
    "measure_shifts",
    "telemetry_tools",
]
