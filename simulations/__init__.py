"""The simulated LLM fleet: causal faults, remediation endpoints, scenarios with ground truth.

A world of its own for game days and tests: it imports only the domain vocabulary, and the
loop drives it through the same interfaces it uses against real systems.
"""

from simulations._faults import ActiveFault, FaultRecord
from simulations._fleet import ActionResult, Fleet, FleetError, SimBatch, next_version
from simulations._scenario import (
    Scenario,
    ScenarioError,
    builtin_scenarios,
    load_scenario,
    load_scenarios,
    parse_scenario,
)
from simulations._spec import FaultTruth, GroundTruth, parse_duration

__all__ = [
    "ActionResult",
    "ActiveFault",
    "FaultRecord",
    "FaultTruth",
    "Fleet",
    "FleetError",
    "GroundTruth",
    "Scenario",
    "ScenarioError",
    "SimBatch",
    "builtin_scenarios",
    "load_scenario",
    "load_scenarios",
    "next_version",
    "parse_duration",
    "parse_scenario",
]
