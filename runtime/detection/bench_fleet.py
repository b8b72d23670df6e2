"""`homeostat bench detection fleet`: the detection stage alone on every simulator scenario.

Each scenario's fleet is advanced `poll_s` seconds at a time and each poll goes through
`DetectionEngine.observe_batch`, as the daemon's simulator source would hand it over. No
supervisor, no incident graph: this shows what detection raises, on which service, and when,
against the scenario's ground truth (faulty services; controls should raise nothing).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.detection.config import DetectionConfig
    from simulations import Scenario


def _onset_s(scenario: Scenario) -> float | None:
    """Seconds from the start to the first fault or deploy injection (None if there is none)."""
    times = [float(i.at) for i in scenario.injections if i.type in ("fault", "deploy")]
    return min(times) if times else None


def scan_scenario(scenario: Scenario, poll_s: float = 60.0, config: DetectionConfig | None = None) -> dict[str, Any]:
    """Detection's anomalies on one scenario, split by ground-truth service and severity."""
    from runtime.detection.columnar import kernels_ready
    from runtime.detection.engine import DetectionEngine

    kernels_ready(wait=True)
    fleet = scenario.build_fleet()
    engine = DetectionEngine(config)
    engine.wait_for_kernels = True
    start = fleet.now
    end = start + timedelta(seconds=scenario.duration_s)
    found = []
    while fleet.now < end:
        found.extend(engine.observe_batch(fleet.advance(poll_s).samples))
    faulty = {f.service for f in scenario.ground_truth.faults}
    alarms = [a for a in found if a.severity.value in ("warning", "critical")]
    on_faulty = [a for a in alarms if a.service in faulty]
    elsewhere = Counter(f"{a.service}/{a.signal} {a.severity.value}" for a in alarms if a.service not in faulty)
    onset = _onset_s(scenario)
    first = min(((a.ts - start).total_seconds() for a in on_faulty), default=None)
    since = [(a.ts - start).total_seconds() - onset for a in on_faulty] if onset is not None else []
    after = min((s for s in since if s >= 0), default=None)
    return {
        "scenario": scenario.name,
        "control": scenario.is_control,
        "faulty_services": sorted(faulty),
        "onset_s": onset,
        "alarms_on_faulty": len(on_faulty),
        "critical_on_faulty": sum(1 for a in on_faulty if a.severity.value == "critical"),
        "first_alarm_on_faulty_s": first,
        "first_alarm_after_onset_s": after,
        "alarms_elsewhere": sum(elsewhere.values()),
        "alarms_elsewhere_by_series": dict(sorted(elsewhere.items())),
        "info_spikes": sum(1 for a in found if a.severity.value == "info"),
        "detectors": dict(sorted(Counter(a.detector for a in alarms).items())),
        "rows": engine.accepted,
    }


def scan_fleet(
    scenarios: list[Scenario], poll_s: float = 60.0, config: DetectionConfig | None = None
) -> dict[str, Any]:
    """`scan_scenario` for each scenario plus the summary the docs quote."""
    rows = [scan_scenario(sc, poll_s, config) for sc in scenarios]
    faults = [r for r in rows if not r["control"]]
    controls = [r for r in rows if r["control"]]
    return {
        "poll_s": poll_s,
        "scenarios": rows,
        "fault_scenarios": len(faults),
        "faults_with_alarm_on_faulty_service": sum(1 for r in faults if r["alarms_on_faulty"]),
        "controls": len(controls),
        "controls_without_alarm": sorted(r["scenario"] for r in controls if not r["alarms_elsewhere"]),
        "controls_with_alarms": {
            r["scenario"]: r["alarms_elsewhere_by_series"] for r in controls if r["alarms_elsewhere"]
        },
        "info_spikes_range": [
            min((r["info_spikes"] for r in rows), default=0),
            max((r["info_spikes"] for r in rows), default=0),
        ],
    }


def load(directory: Path | None) -> list[Scenario]:
    """Scenarios from a folder, or the shipped ones."""
    from simulations import builtin_scenarios, load_scenario, load_scenarios

    return load_scenarios(directory) if directory is not None else [load_scenario(p) for p in builtin_scenarios()]
