"""Columnar intake: SampleBatch, observe_columns, range polls and ADWIN block means give what one-by-one gives."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest

from domain import Anomaly, Sample
from runtime.detection import DetectionEngine, config_from_dict
from runtime.detection.intake import SampleBatch
from tests.detection.fleet import STEP_S, T0, healthy_value
from tests.detection.test_batch_path import faulty_polls, one_by_one


def _rows(poll: list[Sample]) -> tuple[list[tuple[str, str]], list[float], list[float]]:
    return [(s.service, s.signal) for s in poll], [s.ts.timestamp() for s in poll], [s.value for s in poll]


class TestSampleBatch:
    @pytest.mark.parametrize("seed", [0, 1])
    def test_sample_batches_raise_what_one_by_one_raises(self, seed):
        """Polls delivered as SampleBatch (what the sources build) raise the same anomalies, state and counts."""
        polls = faulty_polls(400, seed)
        expected, reference = one_by_one(polls)
        engine = DetectionEngine()
        got = [a for poll in polls for a in engine.observe_batch(SampleBatch(poll))]
        assert got == expected
        assert engine.accepted == reference.accepted
        assert engine.snapshot() == reference.snapshot()

    def test_a_batch_changed_as_a_plain_list_is_read_from_its_samples(self):
        """Appending to a SampleBatch as a list drops its columns; the engine then reads the samples."""
        polls = faulty_polls(80, 2)
        expected, _ = one_by_one(polls)
        engine = DetectionEngine()
        got: list[Anomaly] = []
        for poll in polls:
            batch = SampleBatch(poll[:-1])
            batch.append(poll[-1])
            assert batch.columns() is None
            got.extend(engine.observe_batch(batch))
        assert got == expected

    def test_batches_concatenate_with_their_columns(self):
        """extend_batch keeps rows and columns in step (the push buffer joins batches this way)."""
        poll = faulty_polls(1, 0)[0]
        joined = SampleBatch(poll[:5])
        joined.extend_batch(SampleBatch(poll[5:]))
        cols = joined.columns()
        assert cols is not None
        keys, ids, ts, values = cols
        assert list(joined) == poll
        assert keys == [(s.service, s.signal) for s in poll]
        assert len(set(ids.tolist())) == len(set(keys))
        assert values.tolist() == [s.value for s in poll]
        assert ts.tolist() == [s.ts.timestamp() for s in poll]


class TestObserveColumns:
    def test_columns_raise_what_observe_value_raises(self):
        """observe_columns over a faulty fleet equals observe_value row by row, snapshots included."""
        polls = faulty_polls(300, 3)
        reference = DetectionEngine()
        expected = []
        for poll in polls:
            keys, ts, values = _rows(poll)
            for key, t, v in zip(keys, ts, values, strict=True):
                expected.extend(reference.observe_value(key[0], key[1], t, v))
        engine = DetectionEngine()
        got = [a for poll in polls for a in engine.observe_columns(*_rows(poll))]
        assert got == expected
        assert engine.snapshot() == reference.snapshot()

    def test_bad_rows_are_counted_with_their_reason_and_the_rest_goes_on(self):
        """NaN, inf, strings, empty names, duplicate and out-of-order rows are dropped and counted, per reason."""
        polls = faulty_polls(60, 4)
        engine = DetectionEngine()
        for poll in polls[:50]:
            engine.observe_columns(*_rows(poll))
        keys, ts, values = _rows(polls[50])
        accepted = engine.accepted
        bad_keys = [keys[0], keys[1], ("", "latency_p95_ms"), keys[2], keys[3], keys[3]]
        bad_ts = [ts[0], ts[1], ts[2], ts[2] - 30.0, ts[3], ts[3]]
        bad_values: list[object] = [math.nan, math.inf, 1.0, values[2], values[3], values[3]]
        engine.observe_columns(bad_keys, bad_ts, bad_values)
        assert engine.dropped["not_finite"] == 2
        assert engine.dropped["unknown_series"] == 1
        assert engine.dropped["out_of_order"] == 1
        assert engine.dropped["duplicate_ts"] == 1
        assert engine.accepted == accepted + 1
        engine.observe_columns([keys[4]], [ts[4]], ["high"])
        assert engine.dropped["not_a_number"] == 1
        engine.observe_columns(*_rows(polls[51]))  # the stream goes on
        assert engine.accepted == accepted + 1 + len(polls[51])

    def test_columns_of_different_lengths_are_refused_with_the_lengths(self):
        """A caller bug (columns of different lengths) raises, naming the three lengths."""
        with pytest.raises(ValueError, match=r"\(2, 1, 2\)"):
            DetectionEngine().observe_columns([("a", "b"), ("a", "c")], [1.0], [1.0, 2.0])


class TestRangePolls:
    def test_several_points_per_series_in_one_poll_raise_what_one_by_one_raises(self):
        """A range query's poll (4 points per series, series interleaved) equals one sample at a time."""
        polls = faulty_polls(400, 5)
        merged = [
            SampleBatch(sorted((s for p in polls[i : i + 4] for s in p), key=lambda s: (s.service, s.ts)))
            for i in range(0, 400, 4)
        ]
        expected, reference = one_by_one([list(b) for b in merged])
        engine = DetectionEngine()
        got = [a for batch in merged for a in engine.observe_batch(batch)]
        assert got == expected
        assert engine.snapshot() == reference.snapshot()

    def test_a_late_row_inside_a_range_poll_is_judged_after_the_rows_before_it(self):
        """A duplicate between two good points of one series is counted as a duplicate, as one by one would."""
        polls = faulty_polls(120, 6)
        mixed: list[list[Sample]] = []
        for i in range(0, 120, 3):
            rows = [s for p in polls[i : i + 3] for s in p]
            if i > 60:
                rows.insert(len(rows) // 2, rows[0])  # a repeat of an earlier row, mid-poll
            mixed.append(rows)
        expected, reference = one_by_one(mixed)
        engine = DetectionEngine()
        got = [a for poll in mixed for a in engine.observe_batch(poll)]
        assert got == expected
        assert engine.dropped == reference.dropped
        assert reference.dropped["duplicate_ts"] > 0


class TestBurnRings:
    def test_burn_rate_windows_match_with_irregular_gaps(self):
        """Error-rate series with gaps (several buckets leave a window at once) page the same way in batches."""
        rng = random.Random(7)
        polls: list[list[Sample]] = []
        t = T0
        for i in range(1500):
            t += timedelta(seconds=STEP_S if rng.random() < 0.8 else rng.choice([35.0, 160.0, 700.0]))
            poll = []
            for service in ("chat", "search", "rerank", "embed"):
                v = healthy_value(rng, "error_rate")
                if (i // 150) % 3 == 1 and service != "embed":
                    v = 0.2 + 0.05 * rng.random()  # a burn
                poll.append(Sample(service=service, signal="error_rate", ts=t, value=v))
            polls.append(poll)
        expected, reference = one_by_one(polls)
        engine = DetectionEngine()
        got: list[Anomaly] = []
        for i, poll in enumerate(polls):
            got.extend(engine.observe_batch(SampleBatch(poll)))
            if i % 97 == 0:
                engine = DetectionEngine.restore(engine.snapshot())
        assert {a.detector for a in expected} >= {"burn_rate_3600s_300s"}
        assert got == expected
        assert engine.snapshot() == reference.snapshot()


class TestAdwinBlocks:
    def test_adwin_sees_one_update_per_block(self):
        """River's ADWIN is fed the mean of each block of `adwin_block` samples, not every sample."""
        for block in (1, 8):
            engine = DetectionEngine(config_from_dict({"defaults": {"adwin_block": block}}))
            rng = random.Random(1)
            for i in range(30 + 80):
                engine.observe_value("chat", "latency_p95_ms", 10.0 * i, 600.0 + rng.gauss(0, 20))
            (det,) = list(engine.iter_series())
            assert det.adwin is not None
            assert det.adwin.width == 80 // block

    def test_a_slow_drift_is_still_caught_with_blocks(self):
        """A creeping latency rise (too slow for the CUSUM to see early) still raises one shift with blocks of 8."""
        rng = random.Random(3)
        engine = DetectionEngine()
        found = []
        for i in range(3000):
            drift = 0.0 if i < 500 else 0.4 * (i - 500)
            found.extend(engine.observe_value("chat", "latency_p95_ms", 10.0 * i, 600.0 + drift + rng.gauss(0, 20)))
        shifts = [a for a in found if a.kind == "shift"]
        assert shifts and shifts[0].direction.value == "up"
        assert shifts[0].ts.timestamp() < 10.0 * 1500


class TestSourcesDeliverColumns:
    def _body(self, poll: list[Sample]) -> dict[str, object]:
        return {"samples": [s.model_dump(mode="json") for s in poll]}

    def test_pushed_batches_reach_detection_as_one_batch_with_columns(self):
        """Two pushes drained by one poll arrive as one SampleBatch whose columns match its samples."""
        import asyncio

        from runtime.sources.push import PushSource

        polls = faulty_polls(2, 0)
        push = PushSource()
        for poll in polls:
            parsed = push.parse(self._body(poll))
            assert isinstance(parsed.samples, SampleBatch)
            push.offer(parsed.samples, parsed.changes)
        assert push.buffered == sum(map(len, polls))
        batch = asyncio.run(push.poll(T0))
        assert isinstance(batch.samples, SampleBatch)
        cols = batch.samples.columns()
        assert cols is not None
        assert cols[0] == [(s.service, s.signal) for p in polls for s in p]
        assert cols[3].tolist() == [s.value for p in polls for s in p]
        assert push.buffered == 0

    def test_parsed_telemetry_keeps_rejections_out_of_the_columns(self):
        """Rejected items (NaN, missing fields) are neither in the samples nor in their columns."""
        from runtime.sources import parse_telemetry

        poll = faulty_polls(1, 1)[0]
        items: list[object] = [s.model_dump(mode="json") for s in poll[:3]]
        items.insert(1, {"service": "chat", "signal": "latency_p95_ms", "ts": "2026-01-01T00:00:00Z", "value": "NaN"})
        items.append({"service": "chat"})
        parsed = parse_telemetry(items, [])
        assert len(parsed.rejections) == 2
        assert isinstance(parsed.samples, SampleBatch)
        cols = parsed.samples.columns()
        assert cols is not None
        assert cols[0] == [(s.service, s.signal) for s in poll[:3]]
        engine = DetectionEngine()
        engine.observe_batch(parsed.samples)
        assert engine.accepted == 3


class TestBeforeTheCompiledLoopsLoad:
    def test_polls_go_one_by_one_until_the_loops_are_ready(self, monkeypatch):
        """While the compiled loops load, batches take the one-by-one route and raise the same anomalies."""
        import runtime.detection.engine as engine_module

        polls = faulty_polls(200, 8)
        expected, reference = one_by_one(polls)
        engine = DetectionEngine()
        steps = []
        compiled_step = engine._cols.step
        monkeypatch.setattr(engine._cols, "step", lambda *args: steps.append(1) or compiled_step(*args))
        got: list[Anomaly] = []
        with monkeypatch.context() as patch:
            patch.setattr(engine_module, "kernels_ready", lambda wait=False: False)
            got.extend(a for poll in polls[:100] for a in engine.observe_batch(SampleBatch(poll)))
            assert steps == []  # the compiled step never ran
        got.extend(a for poll in polls[100:] for a in engine.observe_batch(SampleBatch(poll)))
        assert len(steps) >= 100
        assert got == expected
        assert engine.snapshot() == reference.snapshot()


def test_the_compiled_floor_division_is_pythons():
    """Burn-rate bucket indices: the compiled `//` equals Python's, near-integer quotients included."""
    from runtime.detection._kernels import py_floordiv

    rng = random.Random(9)
    widths = [300.0, 25.0, 1800.0, 150.0, 7.3, 0.1]
    cases = [(rng.uniform(0, 2e9), rng.choice(widths)) for _ in range(20_000)]
    cases += [(k * w + d, w) for w in widths for k in (1, 5_666_666, 944_444) for d in (0.0, 1e-7, -1e-7, 5e-324)]
    cases += [(-3.5, 2.0), (3.5, -2.0), (0.0, 3.0), (-0.0, 3.0)]
    for v, w in cases:
        got, want = py_floordiv(v, w), v // w
        assert got == want and math.copysign(1.0, got) == math.copysign(1.0, want), (v, w)


def test_a_snapshot_from_before_block_means_restores_and_goes_on():
    """A checkpoint written before ADWIN block means existed (no block state) restores and keeps detecting."""
    polls = faulty_polls(120, 10)
    engine = DetectionEngine()
    for poll in polls[:60]:
        engine.observe_batch(SampleBatch(poll))
    for det in engine.iter_series():
        del det.blk_sum, det.blk_n  # what an older release pickled
    restored = DetectionEngine.restore(engine.snapshot())
    for poll in polls[60:]:
        restored.observe_batch(SampleBatch(poll))
    assert restored.accepted == sum(map(len, polls))
    assert all(det.blk_n < det.p.adwin_block for det in restored.iter_series())
