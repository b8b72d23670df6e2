"""The in-process Fleet API the runtime codes against: time, batches, topology, determinism."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain import ChangeKind, Sample, Signal
from simulations import Fleet, builtin_scenarios, load_scenario
from tests.simulations.conftest import make_scenario


class TestVirtualTime:
    def test_advance_returns_samples_in_the_half_open_span(self) -> None:
        """advance() returns every sample with ts in (old now, new now], one per signal per service per 10 s."""
        fleet = load_scenario(builtin_scenarios()[0]).build_fleet()
        start = fleet.now
        batch = fleet.advance(60)
        assert fleet.now == start + timedelta(seconds=60)
        stamps = sorted({s.ts for s in batch.samples})
        assert stamps[0] == start + timedelta(seconds=10)
        assert stamps[-1] == start + timedelta(seconds=60)
        services = fleet.topology().services
        assert len(batch.samples) == 6 * len(services) * len(Signal)

    def test_fractional_advances_neither_lose_nor_repeat_ticks(self) -> None:
        """Advancing in odd slices yields exactly the ticks of one big advance."""
        scenario = load_scenario(builtin_scenarios()[0])
        whole = scenario.build_fleet().advance(600).samples
        sliced_fleet = scenario.build_fleet()
        sliced: list[Sample] = []
        for step in [3.3, 7.0, 0.0, 19.7, 570.0]:
            sliced.extend(sliced_fleet.advance(step).samples)
        assert [(s.ts, s.service, s.signal, s.value) for s in sliced] == [
            (s.ts, s.service, s.signal, s.value) for s in whole
        ]

    def test_negative_advance_is_refused(self) -> None:
        """Time cannot go backwards."""
        fleet = Fleet(seed=1, start=load_scenario(builtin_scenarios()[0]).start)
        with pytest.raises(ValueError, match="non-negative"):
            fleet.advance(-1)


class TestSamples:
    def test_every_signal_is_emitted_with_version_labels(self) -> None:
        """Each tick carries all 13 signals per service, valid as domain Samples, labelled with versions."""
        fleet = load_scenario(builtin_scenarios()[0]).build_fleet()
        batch = fleet.advance(10)
        by_service: dict[str, set[str]] = {}
        for sample in batch.samples:
            Sample.model_validate(sample.model_dump())  # constructed fast, must still be valid
            by_service.setdefault(sample.service, set()).add(sample.signal)
            assert set(sample.labels) == {"provider", "model_version", "prompt_version"}
        assert by_service == {name: {s.value for s in Signal} for name in fleet.topology().services}

    def test_same_seed_gives_identical_samples_and_another_seed_does_not(self) -> None:
        """Determinism: the same scenario and seed reproduce every value; a new seed changes the noise."""
        scenario = load_scenario(builtin_scenarios()[0])
        a = [s.model_dump_json() for s in scenario.build_fleet().advance(1800).samples]
        b = [s.model_dump_json() for s in scenario.build_fleet().advance(1800).samples]
        assert a == b
        other = Fleet(seed=scenario.seed + 1, start=scenario.start).advance(1800).samples
        assert [s.value for s in other] != [s.value for s in scenario.build_fleet().advance(1800).samples]


class TestTopology:
    def test_default_fleet_has_the_documented_wiring(self) -> None:
        """The default fleet: support-chat calls kb-retriever; both LLM services use llm-alpha with backup llm-beta."""
        topo = Fleet(seed=1, start=load_scenario(builtin_scenarios()[0]).start).topology()
        assert set(topo.services) == {"support-chat", "doc-summarizer", "kb-retriever"}
        assert topo.services["support-chat"].depends_on == ("kb-retriever",)
        assert topo.on_provider("llm-alpha") == ["doc-summarizer", "support-chat"]
        assert {topo.services[n].backup_provider for n in ("support-chat", "doc-summarizer")} == {"llm-beta"}
        assert sum(s.traffic_share for s in topo.services.values()) == pytest.approx(1.0)
        for info in topo.services.values():
            assert info.previous_model_version and info.previous_prompt_version and info.team

    def test_scheduled_deploy_emits_its_change_event_and_updates_topology(self) -> None:
        """A deploy injection appears as a ChangeEvent in the batch that reaches it, and in the topology."""
        scenario = make_scenario(
            "injections:\n  - {type: deploy, at: 5m, service: doc-summarizer, kind: model_version, to: sum-m-9}\n"
        )
        fleet = scenario.build_fleet()
        assert fleet.advance(299).changes == []
        changes = fleet.advance(1).changes
        assert len(changes) == 1
        change = changes[0]
        assert (change.service, change.kind, change.from_value, change.to_value) == (
            "doc-summarizer",
            ChangeKind.MODEL_VERSION,
            "sum-m-3.2",
            "sum-m-9",
        )
        assert change.ts == scenario.start + timedelta(minutes=5)
        info = fleet.topology().services["doc-summarizer"]
        assert (info.model_version, info.previous_model_version) == ("sum-m-9", "sum-m-3.2")
        after = fleet.advance(10).samples
        assert {s.labels["model_version"] for s in after if s.service == "doc-summarizer"} == {"sum-m-9"}


def test_exported_members() -> None:
    """The package's public surface is exactly what the runtime and docs rely on."""
    import simulations

    assert set(simulations.__all__) >= {
        "ActionResult",
        "Fleet",
        "Scenario",
        "ScenarioError",
        "SimBatch",
        "builtin_scenarios",
        "load_scenario",
    }
    for name in simulations.__all__:
        assert hasattr(simulations, name), name
