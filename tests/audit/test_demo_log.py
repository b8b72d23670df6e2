"""The log the real loop writes (a simulated scenario end to end) verifies and replays exactly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.audit import AuditLog
from runtime.audit.replay import replay
from runtime.cli import app


def _play(db: Path, scenario: str) -> None:
    from runtime.gameday import play_scenario
    from runtime.loop import LoopOptions
    from runtime.supervisor import SupervisorSettings
    from simulations import builtin_scenarios, load_scenario

    spec = load_scenario(next(p for p in builtin_scenarios() if p.stem == scenario))
    options = LoopOptions(db=str(db), supervisor=replace(SupervisorSettings(), id_prefix=spec.name))
    play_scenario(spec, db=str(db), options=options)


@pytest.mark.slow
class TestTheLoopsOwnLog:
    def test_a_played_incident_verifies_and_every_decision_replays(self, tmp_path: Path) -> None:
        """After an approval-gated failover scenario, verify passes and replay reproduces every decision."""
        db = tmp_path / "homeostat.sqlite"
        _play(db, "provider_outage")
        with AuditLog(str(db), create=False) as log:
            assert log.verify().ok
            report = replay(log)
            kinds = {r.kind for r in log.records()}
        assert report.ok, [d.reason for d in report.divergences]
        assert report.decisions >= 1 and report.reproduced == report.decisions
        assert {"constitution_loaded", "decision", "approval", "action_intent", "action_result"} <= kinds
        result = CliRunner().invoke(app, ["audit", "replay", "--db", str(db)])
        assert result.exit_code == 0, result.output
