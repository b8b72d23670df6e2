"""Fail-fast evidence: a service whose served latency falls while its workload drops is scored,
and that family of evidence gets its own places in a ranking without moving the first two."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from agents.diagnosis.shifts import series_windows
from agents.diagnosis.structure import fail_fast_scores, interleave, latency_fall, spread_fall
from domain import Sample
from runtime.telemetry import TelemetryStore

SERVER = "PodServerLatencyP90(s)"
CLIENT = "PodClientLatencyP90(s)"
WORKLOAD = "PodWorkload(Ops)"
CPU = "CpuUsageRate(%)"


class TestLatencyFall:
    def test_a_latency_that_halves_scores_about_ln_two(self) -> None:
        """A served latency falling from 0.1 s to 0.05 s for the whole after-window scores ~ln 2."""
        fall = latency_fall([0.1, 0.1, 0.1, 0.1], [0.05, 0.05, 0.05, 0.05])
        assert fall == pytest.approx(math.log(0.101 / 0.051), rel=1e-9)

    def test_a_rising_latency_scores_nothing(self) -> None:
        """A latency that only rises is not a fail-fast sign."""
        assert latency_fall([0.1, 0.1, 0.1], [0.2, 0.3, 0.4, 0.2]) == 0.0

    def test_one_stray_fast_sample_does_not_count(self) -> None:
        """A single low point among normal ones leaves the rolling median, and the fall, at zero."""
        assert latency_fall([0.1, 0.1, 0.1], [0.1, 0.001, 0.1, 0.1, 0.1]) == 0.0

    def test_thin_windows_or_a_zero_level_score_nothing(self) -> None:
        """One point before, nothing after, or a zero level before give no evidence."""
        assert latency_fall([0.1], [0.01, 0.01, 0.01]) == 0.0
        assert latency_fall([0.1, 0.1], []) == 0.0
        assert latency_fall([0.0, 0.0, 0.0], [0.0, 0.0, 0.0]) == 0.0

    def test_the_score_does_not_depend_on_the_unit(self) -> None:
        """The same fall in seconds and in milliseconds scores the same."""
        seconds = latency_fall([0.2, 0.21, 0.19], [0.05, 0.04, 0.05])
        millis = latency_fall([200.0, 210.0, 190.0], [50.0, 40.0, 50.0])
        assert seconds == pytest.approx(millis, rel=1e-9)


class TestSpreadFall:
    def test_a_drop_is_measured_in_the_series_own_spreads(self) -> None:
        """Workload steady at 10 +- 0.5 dropping to 5 is (10 - 5) / 0.7413 spreads."""
        fall = spread_fall([9.5, 10.0, 10.5, 10.0, 9.5, 10.5], [5.0, 5.0, 5.0])
        assert fall == pytest.approx(5.0 / (1.4826 * 0.5), rel=1e-6)

    def test_a_rise_scores_nothing_and_a_collapse_is_capped(self) -> None:
        """Only falls count, and a flat series falling to zero is capped at 50 spreads."""
        assert spread_fall([1.0, 1.0, 1.0], [3.0, 3.0, 3.0]) == 0.0
        assert spread_fall([1.0, 1.0, 1.0], [0.0, 0.0, 0.0]) == 50.0


def _windows() -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    steady = ([0.1, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1])
    busy = ([4.0, 4.2, 3.8, 4.0], [4.0, 4.1, 3.9, 4.0])
    return {
        # "quick": fails fast - serves in a tenth of the time, and its workload halves.
        ("quick", SERVER): ([0.2, 0.2, 0.2, 0.2], [0.02, 0.02, 0.02, 0.02]),
        ("quick", WORKLOAD): ([4.0, 4.2, 3.8, 4.0], [2.0, 2.0, 2.0, 2.0]),
        # "slow": the usual victim - its latency rises and its CPU climbs.
        ("slow", SERVER): ([0.1, 0.1, 0.1, 0.1], [0.9, 1.2, 1.1, 1.0]),
        ("slow", WORKLOAD): busy,
        ("slow", CPU): ([1.0, 1.0, 1.0], [0.1, 0.1, 0.1]),
        # "caller": only its outgoing calls got faster: not its own served latency.
        ("caller", CLIENT): ([0.3, 0.3, 0.3, 0.3], [0.01, 0.01, 0.01, 0.01]),
        ("caller", SERVER): steady,
    }


class TestFailFastScores:
    def test_the_fail_fast_service_scores_highest(self) -> None:
        """Served latency down tenfold plus a halved workload outscores a victim whose latency rose."""
        scores = fail_fast_scores(_windows(), ["quick", "slow", "caller", "idle"])
        assert max(scores, key=lambda s: scores[s]) == "quick"
        assert scores["slow"] == 0.0

    def test_other_signal_families_are_ignored(self) -> None:
        """A falling CPU or a falling client latency adds nothing: only served latency and workload count."""
        scores = fail_fast_scores(_windows(), ["slow", "caller"])
        assert scores == {"slow": 0.0, "caller": 0.0}

    def test_every_named_service_gets_a_score(self) -> None:
        """Services without the signals are scored 0, and only the named services are returned."""
        scores = fail_fast_scores(_windows(), ["idle", "quick"])
        assert set(scores) == {"idle", "quick"}
        assert scores["idle"] == 0.0

    def test_the_traffic_weight_scales_the_workload_part(self) -> None:
        """Doubling the traffic weight adds exactly one more workload-fall term."""
        windows = _windows()
        one = fail_fast_scores(windows, ["quick"], traffic_weight=0.1)["quick"]
        two = fail_fast_scores(windows, ["quick"], traffic_weight=0.2)["quick"]
        latency_only = fail_fast_scores(windows, ["quick"], traffic_weight=0.0)["quick"]
        assert two - latency_only == pytest.approx(2 * (one - latency_only))
        assert latency_only == pytest.approx(latency_fall(*windows[("quick", SERVER)]))


def fuse_family(order: list[str], family: dict[str, float]) -> list[str]:
    """One family interleaved after the first two places (the shipped fusion keeps only the leader)."""
    return interleave(order, [family], keep=2)


def fail_fast_from_telemetry(
    store: TelemetryStore, services: list[str], onset: datetime, now: datetime, *, before: timedelta, after: timedelta
) -> dict[str, float]:
    """Fail-fast scores on the windows the diagnoser reads from the store."""
    return fail_fast_scores(series_windows(store, services, onset, now, before=before, after=after), services)


class TestFuseFamily:
    def test_the_family_leader_takes_third_place(self) -> None:
        """The first two places stay; the family's best takes place 3, then the places alternate."""
        order = ["a", "b", "c", "d", "e", "f"]
        fused = fuse_family(order, {"f": 2.0, "e": 1.0})
        assert fused == ["a", "b", "f", "c", "e", "d"]

    def test_services_already_placed_are_skipped(self) -> None:
        """A family pick that is already in the first places does not take a second place."""
        fused = fuse_family(["a", "b", "c", "d"], {"a": 5.0, "d": 1.0})
        assert fused == ["a", "b", "d", "c"]

    def test_without_positive_scores_the_order_is_unchanged(self) -> None:
        """Zero or negative family scores, or services outside the order, leave the order as it was."""
        order = ["a", "b", "c", "d"]
        assert fuse_family(order, {"a": 0.0, "c": -1.0, "zz": 3.0}) == order

    def test_ties_follow_the_base_order_and_every_service_stays(self) -> None:
        """Equal family scores break ties by the base order; the result is a permutation of it."""
        order = ["a", "b", "c", "d", "e"]
        fused = fuse_family(order, {"e": 1.0, "d": 1.0})
        assert fused == ["a", "b", "d", "c", "e"]
        assert sorted(fused) == sorted(order)


class TestSeriesWindows:
    def test_windows_split_at_onset_and_stop_at_now(self) -> None:
        """Values before onset go before, values from onset to now go after, later ones are left out."""
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        store = TelemetryStore()
        store.add_samples(
            Sample(service="svc", signal=SERVER, ts=t0 + timedelta(minutes=i), value=float(i)) for i in range(10)
        )
        onset, now = t0 + timedelta(minutes=5), t0 + timedelta(minutes=8)
        windows = series_windows(store, ["svc"], onset, now, before=timedelta(minutes=3), after=timedelta(minutes=30))
        assert windows == {("svc", SERVER): ([2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0])}


def _store(series: dict[tuple[str, str], list[float]], t0: datetime) -> TelemetryStore:
    store = TelemetryStore()
    store.add_samples(
        Sample(service=svc, signal=sig, ts=t0 + timedelta(minutes=i), value=v)
        for (svc, sig), values in series.items()
        for i, v in enumerate(values)
    )
    return store


class TestFailFastFromTelemetry:
    def test_reads_the_store_and_scores_the_service_that_stopped_serving(self) -> None:
        """From a store: served latency down ~9x (ln ratio) plus a steady workload gone (capped, 50 spreads)."""
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        store = _store(
            {
                ("quick", SERVER): [0.2, 0.2, 0.2, 0.2, 0.02, 0.02, 0.02, 0.02],
                ("quick", WORKLOAD): [4.0, 4.0, 4.0, 4.0, 0.0, 0.0, 0.0, 0.0],
                ("slow", SERVER): [0.1, 0.1, 0.1, 0.1, 1.0, 1.0, 1.0, 1.0],
                ("slow", CPU): [5.0, 5.0, 5.0, 5.0, 0.5, 0.5, 0.5, 0.5],
            },
            t0,
        )
        onset = t0 + timedelta(minutes=4)
        scores = fail_fast_from_telemetry(
            store,
            ["quick", "slow"],
            onset,
            t0 + timedelta(minutes=8),
            before=timedelta(minutes=30),
            after=timedelta(minutes=30),
        )
        assert scores["slow"] == 0.0
        assert scores["quick"] == pytest.approx(math.log(0.202 / 0.022) + 0.2 * 50.0)

    def test_signals_homeostat_knows_give_no_fail_fast_evidence(self) -> None:
        """Simulator-style signals (latency_p95_ms, request_rate) are not served latency or workload: no reordering."""
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        store = _store(
            {
                ("llm", "latency_p95_ms"): [900.0, 900.0, 900.0, 900.0, 90.0, 90.0, 90.0],
                ("llm", "request_rate"): [10.0, 10.0, 10.0, 10.0, 1.0, 1.0, 1.0],
            },
            t0,
        )
        scores = fail_fast_from_telemetry(
            store,
            ["llm", "kb"],
            t0 + timedelta(minutes=4),
            t0 + timedelta(minutes=7),
            before=timedelta(minutes=30),
            after=timedelta(minutes=30),
        )
        assert scores == {"kb": 0.0, "llm": 0.0}
        assert fuse_family(["kb", "llm", "x"], scores) == ["kb", "llm", "x"]


class TestNoiseIsNoSignature:
    def test_noise_level_dips_score_nothing(self) -> None:
        """A workload 4 of its own spreads but only 5 % lower, and a latency 10 % lower, are noise, not a fail-fast."""
        windows = {
            ("calm", WORKLOAD): ([8.0, 8.1, 7.9, 8.0, 8.05], [7.6, 7.6, 7.6]),
            ("calm", SERVER): ([0.05, 0.05, 0.05, 0.05], [0.045, 0.045, 0.045]),
        }
        assert fail_fast_scores(windows, ["calm"]) == {"calm": 0.0}
        assert fuse_family(["a", "calm", "b", "c"], fail_fast_scores(windows, ["calm"])) == ["a", "calm", "b", "c"]

    def test_a_marked_fall_counts(self) -> None:
        """The same series falling by half (latency) and to zero (workload) score as a fail-fast."""
        windows = {
            ("quick", WORKLOAD): ([8.0, 8.1, 7.9, 8.0, 8.05], [0.0, 0.0, 0.0]),
            ("quick", SERVER): ([0.05, 0.05, 0.05, 0.05], [0.025, 0.025, 0.025]),
        }
        assert fail_fast_scores(windows, ["quick"])["quick"] > 1.0


def test_a_fail_fast_service_ranks_in_the_top_three_and_cites_its_series() -> None:
    """Through the diagnoser: the service whose served latency and workload fell ranks in the top
    three among louder CPU movers, and its evidence names the two series that fell."""
    from agents.diagnosis import DeterministicDiagnoser
    from agents.ports import IncidentContext
    from domain import Anomaly, Direction, SeriesEvidence, ServiceInfo, Topology

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    steady = [1.0, 1.02, 0.98, 1.0, 1.01, 0.99]
    series: dict[tuple[str, str], list[float]] = {}
    for svc in ("entry", "loud", "louder", "quick", "idle"):
        series[(svc, SERVER)] = [0.1 * v for v in steady] + [0.1] * 5
        series[(svc, WORKLOAD)] = [5.0 * v for v in steady] + [5.0] * 5
        series[(svc, CPU)] = [10.0 * v for v in steady] + [10.0] * 5
    series[("entry", SERVER)] = [0.1 * v for v in steady] + [0.4] * 5
    series[("loud", CPU)] = [10.0 * v for v in steady] + [60.0] * 5
    series[("louder", CPU)] = [10.0 * v for v in steady] + [90.0] * 5
    series[("quick", SERVER)] = [0.1 * v for v in steady] + [0.03] * 5
    series[("quick", WORKLOAD)] = [5.0 * v for v in steady] + [0.0] * 5
    store = _store(series, t0)
    store.set_topology(
        Topology(
            services={
                s: ServiceInfo(name=s, provider="", model_version="", prompt_version="", traffic_share=0.0)
                for s in sorted({svc for svc, _ in series})
            }
        )
    )
    onset = t0 + timedelta(minutes=6)
    ctx = IncidentContext(
        incident_id="inc-ff",
        onset=onset,
        now=t0 + timedelta(minutes=11),
        anomalies=(
            Anomaly(
                id="a-1",
                service="entry",
                signal=SERVER,
                detector="test",
                ts=onset,
                direction=Direction.UP,
                baseline=0.1,
                current=0.4,
            ),
        ),
        telemetry=store,
    )
    ranked = DeterministicDiagnoser().ranked(ctx)
    order = [r.service for r in ranked]
    assert order.index("quick") <= 2, order
    quick = ranked[order.index("quick")]
    cited = {(e.service, e.signal) for e in quick.evidence if isinstance(e, SeriesEvidence)}
    assert {("quick", SERVER), ("quick", WORKLOAD)} <= cited


class TestInterleave:
    def test_two_families_and_the_score_take_turns_after_the_leader(self) -> None:
        """Leader first, then each family's best unplaced service and the next by score, in turn."""
        order = ["a", "b", "c", "d", "e", "f"]
        fast = {"e": 2.0, "f": 1.0}
        credit = {"d": 1.0, "e": 0.5}
        assert interleave(order, [fast, credit], keep=1) == ["a", "e", "d", "b", "f", "c"]

    def test_a_family_without_scores_takes_no_turn(self) -> None:
        """An empty family leaves the rotation to the others; with no family at all the order stands."""
        order = ["a", "b", "c", "d"]
        assert interleave(order, [{}, {"d": 1.0}], keep=1) == ["a", "d", "b", "c"]
        assert interleave(order, [{}, {}], keep=1) == order
