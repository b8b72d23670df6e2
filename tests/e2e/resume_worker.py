"""Second process for the restart test: open the same SQLite file, approve, let the graph resume.

Usage: python resume_worker.py SCENARIO_YAML DB_PATH APPROVER
Prints one JSON line: the incidents' final states and the actions the fleet saw.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime

from domain import ActionName
from domain.clock import VirtualClock
from runtime.gameday import FleetAdapter
from runtime.loop import ControlLoop, LoopOptions
from runtime.ports import Identity, TelemetryBatch
from simulations import load_scenario
from tools import CallableAdapter, GuardConfig


def main() -> None:
    scenario_path, db, approver = sys.argv[1:4]
    scenario = load_scenario(scenario_path)
    fleet = scenario.build_fleet()
    clock = VirtualClock(fleet.now)
    adapter = FleetAdapter(fleet, clock)
    options = LoopOptions(db=db, guard=GuardConfig(allow={a: ["*"] for a in ActionName}))
    loop = ControlLoop(options, clock=clock, adapter=CallableAdapter(adapter.call, adapter.lookup))
    loop.recover()
    pending = loop.supervisor.pending_approvals()
    assert len(pending) == 1, f"expected one pending approval after restart, found {len(pending)}"
    incident_id = pending[0]["id"]
    # Bring this process's fleet (deterministic, same seed) to the moment the first process stopped.
    stopped_at = datetime.fromisoformat(pending[0]["updated_at"])
    while fleet.now < stopped_at:
        batch = fleet.advance(fleet.interval_s)
        clock.set(fleet.now)
        loop.telemetry.add_samples(batch.samples)
        loop.telemetry.add_changes(batch.changes)
    loop.telemetry.set_topology(fleet.topology())
    loop.supervisor.approve(incident_id, Identity(approver, ("approver",)), "approved after restart")
    for _ in range(60):  # ten virtual minutes: deliver the answer, act, wait out the recovery window
        batch = fleet.advance(fleet.interval_s)
        clock.set(fleet.now)
        loop.ingest(TelemetryBatch(samples=batch.samples, changes=batch.changes))
        loop.tick()
    row = loop.store.get(incident_id)
    assert row is not None
    print(
        json.dumps(
            {
                "incident": incident_id,
                "state": row.state,
                "actions": [(r.action, r.target) for r in fleet.applied_actions],
            }
        )
    )
    loop.close()


if __name__ == "__main__":
    main()
