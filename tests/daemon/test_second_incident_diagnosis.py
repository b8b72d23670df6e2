"""A second outage minutes after a failover elsewhere is diagnosed as its own provider's outage.

Homeostat fails a provider over (a `provider` change event, actor `homeostat`, onto a slower backup);
minutes later an unrelated service on its own provider pair has an outage. The diagnoser once
explained that second incident with the first failover, a change on a service outside the incident,
so the second outage's own provider was never failed over (the daemon's must-show saw it escalated
or failing back the wrong provider). A change now explains only the incident's own services and
what they depend on, and a service with its own change does not count against a provider outage.
"""

from __future__ import annotations

import re
from pathlib import Path

from runtime.gameday import ScriptedApprover, play_scenario
from runtime.loop import ControlLoop
from runtime.ports import Identity
from simulations import load_scenario
from tests._daemon_harness import REPO
from tests.daemon.test_must_show import FOURTH_SERVICE

TWO_OUTAGES = """injections:
  - {type: fault, at: 40m, fault: provider_outage, provider: llm-alpha, severity: 1.0, shape: sudden}
  - {type: fault, at: 46m, fault: provider_outage, provider: llm-omega, severity: 1.0, shape: sudden}
"""


def _second_proposed(loop: ControlLoop) -> bool:
    return any(r.services == ["code-assistant"] and r.action for r in loop.incidents())


def test_an_outage_minutes_after_an_approved_failover_elsewhere_fails_over_its_own_provider(tmp_path: Path) -> None:
    """A second provider outage on another service, after a failover, is proposed as a failover of its own provider."""
    text = (REPO / "simulations/scenarios/provider_outage.yaml").read_text()
    text = re.sub(r"(?ms)^injections:.*?(?=^ground_truth:)", FOURTH_SERVICE + TWO_OUTAGES, text)
    path = tmp_path / "two_outages.yaml"
    path.write_text(text)
    approver = ScriptedApprover(Identity("ana@sre", ("approver",)), delay_s=30)
    result = play_scenario(
        load_scenario(path), db=str(tmp_path / "h.sqlite"), approvers=(approver,), stop_when=_second_proposed
    )
    first = [r for r in result.incidents if "support-chat" in r.services or "doc-summarizer" in r.services]
    assert first and (first[-1].action, first[-1].target) == ("failover_provider", "llm-alpha")
    second = [r for r in result.incidents if r.services == ["code-assistant"]]
    assert second, result.incidents
    assert (second[0].action, second[0].target) == ("failover_provider", "llm-omega"), second[0]
