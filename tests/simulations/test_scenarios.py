"""Scenario files: every shipped one loads, controls stay healthy, bad files name file:line and field."""

from __future__ import annotations

import copy
import statistics
from pathlib import Path

import pytest

from domain import Signal
from simulations import ScenarioError, builtin_scenarios, load_scenario

SHIPPED = builtin_scenarios()


def test_demo_scenarios_are_shipped() -> None:
    """The three scenarios the demo runs exist under their documented names."""
    names = {p.stem for p in SHIPPED}
    assert {"bad_prompt_deploy", "provider_outage", "benign_deploy"} <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_scenario_loads_and_is_consistent(path: Path) -> None:
    """Each shipped scenario validates, names itself after its file, and faults start after warm-up."""
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert scenario.description
    assert 3600 <= scenario.duration_s <= 3 * 3600
    for injection in scenario.injections:
        if injection.type == "fault":
            assert injection.at >= 30 * 60, "detectors need 30 minutes to warm up"
    truth = scenario.ground_truth
    if truth.cause is None:
        assert not truth.incident_expected and not truth.acceptable_actions
    else:
        assert truth.acceptable_actions and truth.incident_expected
        assert not set(truth.acceptable_actions) & set(truth.harmful_actions)


# Healthy bands: what an SRE would accept as a healthy LLM service, per signal.
HEALTHY = {
    Signal.ERROR_RATE: (0.0, 0.02),
    Signal.QUALITY_SCORE: (0.75, 1.0),
    Signal.HALLUCINATION_RATE: (0.0, 0.08),
    Signal.POLICY_VIOLATION_RATE: (0.0, 0.015),
    Signal.PII_ALERTS: (0.0, 0.2),
    Signal.QUEUE_DEPTH: (0.0, 15.0),
}


@pytest.mark.parametrize("path", [p for p in SHIPPED if load_scenario(p).is_control], ids=lambda p: p.stem)
def test_no_fault_control_stays_within_healthy_bands(path: Path) -> None:
    """A control scenario's every service stays healthy on average in every 10-minute window."""
    scenario = load_scenario(path)
    fleet = scenario.build_fleet()
    samples = fleet.advance(scenario.duration_s).samples
    assert fleet.active_faults() == [] and fleet.fault_log() == []
    windows: dict[tuple[str, str, int], list[float]] = {}
    for s in samples:
        minute = int((s.ts - scenario.start).total_seconds() // 600)
        windows.setdefault((s.service, s.signal, minute), []).append(s.value)
    for (service, signal, window), values in windows.items():
        if signal in HEALTHY:
            low, high = HEALTHY[Signal(signal)]
            mean = statistics.fmean(values)
            assert low <= mean <= high, f"{path.stem}: {service}/{signal} window {window} mean {mean:g}"


class TestBadFiles:
    def _error(self, tmp_path: Path, text: str) -> str:
        path = tmp_path / "bad.yaml"
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ScenarioError) as info:
            load_scenario(path)
        return str(info.value)

    def test_wrong_field_value_names_file_line_and_field(self, tmp_path: Path) -> None:
        """A bad value deep in an injection is reported as file:line and its dotted path."""
        message = self._error(
            tmp_path,
            "name: x\nseed: 1\nduration: 1h\ninjections:\n  - type: fault\n    at: 40m\n"
            "    fault: bad_prompt_deploy\n    service: support-chat\n    shape: sideways\n",
        )
        assert f"{tmp_path / 'bad.yaml'}:9: injections.0.shape:" in message

    def test_unknown_field_is_named(self, tmp_path: Path) -> None:
        """A misspelt key is an error at its line, not silently ignored."""
        message = self._error(tmp_path, "name: x\nseed: 1\nduration: 1h\ngroud_truth: {}\n")
        assert "bad.yaml:4: groud_truth: unknown field" in message

    def test_missing_field_is_named(self, tmp_path: Path) -> None:
        """A missing required field is named."""
        message = self._error(tmp_path, "name: x\nduration: 1h\n")
        assert "bad.yaml:1: seed: required field is missing" in message

    def test_bad_duration_says_how_to_write_one(self, tmp_path: Path) -> None:
        """An unreadable duration points at its line and shows the accepted forms."""
        message = self._error(tmp_path, "name: x\nseed: 1\nduration: two hours\n")
        assert "bad.yaml:3: duration:" in message and "'40m'" in message

    def test_unknown_service_in_injection(self, tmp_path: Path) -> None:
        """An injection on a service the fleet lacks is refused with the known names."""
        message = self._error(
            tmp_path,
            "name: x\nseed: 1\nduration: 1h\ninjections:\n"
            "  - {type: fault, at: 40m, fault: capacity, service: ghost}\n",
        )
        assert "bad.yaml:4:" in message and "unknown service 'ghost'" in message and "support-chat" in message

    def test_ground_truth_for_unknown_service(self, tmp_path: Path) -> None:
        """Ground truth naming a service that does not exist is refused at its line."""
        message = self._error(
            tmp_path,
            "name: x\nseed: 1\nduration: 1h\nground_truth:\n  cause: capacity\n  service: ghost\n"
            "  acceptable_actions: [throttle]\n",
        )
        assert "bad.yaml:6: ground_truth.service: unknown service 'ghost'" in message

    def test_invalid_yaml_names_line(self, tmp_path: Path) -> None:
        """A YAML syntax error is reported with its line."""
        message = self._error(tmp_path, "name: x\nseed: [1\nduration: 1h\n")
        assert "bad.yaml:" in message and "invalid YAML" in message

    def test_injection_after_the_end(self, tmp_path: Path) -> None:
        """An injection scheduled after the scenario ends is refused."""
        message = self._error(
            tmp_path,
            "name: x\nseed: 1\nduration: 1h\ninjections:\n  - type: deploy\n    at: 2h\n    service: support-chat\n",
        )
        assert "bad.yaml:6: injections.0.at:" in message

    def test_shares_must_sum_to_one(self, tmp_path: Path) -> None:
        """Adding a service without rebalancing traffic shares is refused, showing the shares."""
        message = self._error(
            tmp_path,
            "name: x\nseed: 1\nduration: 1h\nfleet:\n  services:\n"
            "    new-bot: {provider: llm-beta, traffic_share: 0.1}\n",
        )
        assert "traffic shares must sum to 1" in message and "new-bot=0.1" in message

    def test_unreadable_file(self, tmp_path: Path) -> None:
        """A missing file is a ScenarioError naming the path."""
        with pytest.raises(ScenarioError, match=r"missing\.yaml"):
            load_scenario(tmp_path / "missing.yaml")


FAULTY = [p for p in SHIPPED if not load_scenario(p).is_control]


@pytest.mark.parametrize("path", FAULTY, ids=lambda p: p.stem)
def test_ground_truth_matches_the_mechanics(path: Path) -> None:
    """In every shipped fault scenario the acceptable actions heal it and the harmful ones do not."""
    scenario = load_scenario(path)
    last_fault = max(i.at for i in scenario.injections if i.type == "fault")
    broken = scenario.build_fleet()
    broken.advance(last_fault + 600)
    assert broken.active_faults(), f"{path.stem}: the fault should be active"
    for truth in scenario.ground_truth.faults:
        fixers = [a for a in truth.acceptable_actions if a.value != "escalate"]
        assert fixers, f"{path.stem}: at least one acceptable action must remove the fault"
        for action in fixers:
            fleet = copy.deepcopy(broken)
            result = fleet.apply_action(action, truth.action_target, {}, "fix")
            assert result.status == "applied", result.detail
            fleet.advance(900)
            still = {(f.cause, f.service or f.provider) for f in fleet.active_faults()}
            assert (truth.cause, truth.service) not in still and (truth.cause, truth.provider) not in still, (
                f"{path.stem}: {action} on {truth.action_target} left {still}"
            )
        for action in truth.harmful_actions:
            fleet = copy.deepcopy(broken)
            before = len(fleet.active_faults())
            fleet.apply_action(action, truth.action_target, {}, "harm")
            fleet.advance(60)
            assert len(fleet.active_faults()) == before, f"{path.stem}: harmful {action} healed the fault"
