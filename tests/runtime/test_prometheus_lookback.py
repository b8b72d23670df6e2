"""The Prometheus source's first poll reads back far enough for warm-up and open incidents, in bounded chunks."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agents.graph import BASELINE_WINDOW
from domain import IncidentState
from runtime.detection.config import config_from_dict
from runtime.sources import (
    PrometheusSource,
    PromQuery,
    SourceError,
    detector_warmup_samples,
    open_incident_history,
)
from runtime.store import IncidentRow, IncidentStore, engine_for
from tests.runtime._loopback import serve

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)
ONSET = NOW - timedelta(minutes=20)


def error_rate(t: float) -> float:
    """0.01 give or take before the onset, 0.30 during the incident."""
    return 0.30 if t >= ONSET.timestamp() else 0.01 + 0.001 * (int(t) % 3)


class LimitedPrometheus:
    """A loopback query_range API that refuses more than `max_points` points per series, as Prometheus does."""

    def __init__(self, max_points: int = 11_000, fn: Callable[[float], float] = error_rate) -> None:
        self.max_points = max_points
        self.fn = fn
        self.ranges: list[tuple[float, float, float]] = []
        self.calls = 0
        self.fail_call: int | None = None  # answer this call (1-based) with a server error

    async def query_range(self, request: Request) -> Response:
        start, end, step = (float(request.query_params[k]) for k in ("start", "end", "step"))
        self.calls += 1
        if self.calls == self.fail_call:
            return JSONResponse({"status": "error", "errorType": "internal", "error": "query timed out"}, 503)
        points = math.floor((end - start) / step) + 1
        if points > self.max_points:
            return JSONResponse(
                {
                    "status": "error",
                    "errorType": "bad_data",
                    "error": f"exceeded maximum resolution of {self.max_points} points per timeseries",
                },
                status_code=400,
            )
        self.ranges.append((start, end, step))
        values = [[start + i * step, str(self.fn(start + i * step))] for i in range(points)]
        result = [{"metric": {"service": "chat"}, "values": values}]
        return JSONResponse({"status": "success", "data": {"resultType": "matrix", "result": result}})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/api/v1/query_range", self.query_range)])


def _stamps(batch: object) -> list[datetime]:
    return [s.ts for s in batch.samples]  # type: ignore[attr-defined]


def _source(url: str, **kw: object) -> PrometheusSource:
    return PrometheusSource(url, [PromQuery("error_rate", "llm_error_ratio")], step_s=15, **kw)  # type: ignore[arg-type]


class TestFirstPollHistory:
    async def test_open_incident_hint_brings_its_whole_pre_onset_baseline(self) -> None:
        """The first poll reads from an open incident's onset (20 min ago) minus the baseline window, each step once."""
        fake = LimitedPrometheus()
        with serve(fake.app()) as url:
            source = _source(url, lookback_s=300, history_from=lambda now: ONSET - BASELINE_WINDOW)
            first = await source.poll(NOW)
            second = await source.poll(NOW + timedelta(seconds=15))
            await source.aclose()
        stamps = _stamps(first)
        assert stamps[0] == ONSET - BASELINE_WINDOW and stamps[-1] == NOW
        assert all(b - a == timedelta(seconds=15) for a, b in itertools.pairwise(stamps))
        assert _stamps(second) == [NOW + timedelta(seconds=15)]
        assert source.first_poll_from == ONSET - BASELINE_WINDOW
        assert source.first_poll_reason == "open incidents' pre-onset baseline"
        before = [s.value for s in first.samples if s.ts < ONSET]
        assert len(before) == BASELINE_WINDOW // timedelta(seconds=15)
        assert max(before) < 0.02

    async def test_lookback_is_the_floor_and_warmup_extends_it(self) -> None:
        """With no hint the first poll reads lookback_s; a detector warm-up longer than that reads the warm-up."""
        fake = LimitedPrometheus()
        with serve(fake.app()) as url:
            plain = _source(url, lookback_s=300, history_from=lambda now: None)
            short_hint = _source(url, lookback_s=300, history_from=lambda now: now - timedelta(seconds=60))
            warm = _source(url, lookback_s=300, warmup_s=450)
            got = [_stamps(await s.poll(NOW))[0] for s in (plain, short_hint, warm)]
            for s in (plain, short_hint, warm):
                await s.aclose()
        assert got == [NOW - timedelta(seconds=300), NOW - timedelta(seconds=300), NOW - timedelta(seconds=450)]
        assert warm.first_poll_reason == "detector warm-up 450s"

    async def test_history_is_capped_by_max_history(self) -> None:
        """An incident open for days does not make the first poll read further back than max_history_s."""
        fake = LimitedPrometheus()
        with serve(fake.app()) as url:
            source = _source(url, history_from=lambda now: now - timedelta(days=3), max_history_s=3600)
            stamps = _stamps(await source.poll(NOW))
            await source.aclose()
        assert stamps[0] == NOW - timedelta(hours=1)
        assert "capped by max_history_s 3600" in source.first_poll_reason

    async def test_a_failing_hint_falls_back_to_lookback(self, caplog: pytest.LogCaptureFixture) -> None:
        """A hint that raises is logged and the first poll still reads lookback_s."""

        def broken(now: datetime) -> datetime | None:
            raise OSError("database is locked")

        fake = LimitedPrometheus()
        with serve(fake.app()) as url:
            source = _source(url, lookback_s=300, history_from=broken)
            stamps = _stamps(await source.poll(NOW))
            await source.aclose()
        assert stamps[0] == NOW - timedelta(seconds=300)
        assert "database is locked" in caplog.text


class TestBoundedQueries:
    async def test_long_history_is_split_into_queries_prometheus_accepts(self) -> None:
        """Four hours at a 1 s step (14,401 points) arrive in queries of at most 11,000 points, no gap, no repeat."""
        fake = LimitedPrometheus(fn=lambda t: 0.01)
        with serve(fake.app()) as url:
            source = PrometheusSource(
                url,
                [PromQuery("error_rate", "x")],
                step_s=1,
                history_from=lambda now: now - timedelta(hours=4),
            )
            stamps = _stamps(await source.poll(NOW))
            await source.aclose()
        assert len(fake.ranges) == 2
        assert all((end - start) / step + 1 <= 11_000 for start, end, step in fake.ranges)
        assert len(stamps) == 4 * 3600 + 1 and len(set(stamps)) == len(stamps)
        assert stamps[0] == NOW - timedelta(hours=4) and stamps[-1] == NOW

    async def test_a_failed_chunk_delivers_nothing_and_the_next_poll_gets_everything(self) -> None:
        """If one chunk of the first read fails, the poll fails whole and the retry delivers every point once."""
        fake = LimitedPrometheus(max_points=20)
        fake.fail_call = 2
        with serve(fake.app()) as url:
            source = _source(url, lookback_s=300, max_points_per_query=20)  # 21 points: two chunks, the second fails
            with pytest.raises(SourceError, match="query timed out"):
                await source.poll(NOW)
            stamps = _stamps(await source.poll(NOW))
            await source.aclose()
        assert stamps == [NOW - timedelta(seconds=300) + timedelta(seconds=15 * i) for i in range(21)]

    async def test_catch_up_after_an_outage_is_chunked_and_capped(self) -> None:
        """A poll after a long Prometheus outage reads at most max_history_s, in accepted chunks, on the step grid."""
        fake = LimitedPrometheus(max_points=100, fn=lambda t: 0.01)
        with serve(fake.app()) as url:
            source = _source(url, lookback_s=60, max_history_s=3600, max_points_per_query=100)
            await source.poll(NOW)
            later = NOW + timedelta(hours=5, seconds=7)
            stamps = _stamps(await source.poll(later))
            await source.aclose()
        assert stamps[0] >= later - timedelta(hours=1) and stamps[-1] <= later
        assert all((ts - NOW) % timedelta(seconds=15) == timedelta(0) for ts in stamps)
        assert len(stamps) == 240 and all((end - start) / step + 1 <= 100 for start, end, step in fake.ranges)


class TestHistoryHints:
    def test_open_incidents_onset_minus_the_baseline_window(self, tmp_path: Path) -> None:
        """The store hint is the earliest open incident's onset minus BASELINE_WINDOW; closed incidents do not count."""
        db = tmp_path / "h.db"
        store = IncidentStore(engine_for(str(db)))

        def row(incident: str, state: IncidentState, onset: datetime) -> IncidentRow:
            stamp = onset.isoformat()
            return IncidentRow(
                id=incident, state=state.value, onset=stamp, opened_at=stamp, updated_at=stamp, settle_until=stamp
            )

        hint = open_incident_history(f"sqlite:///{db}")
        assert hint(NOW) is None
        store.add(row("old", IncidentState.RESOLVED, NOW - timedelta(hours=2)))
        assert hint(NOW) is None
        store.add(row("a", IncidentState.VERIFYING, ONSET))
        store.add(row("b", IncidentState.AWAITING_APPROVAL, NOW - timedelta(minutes=5)))
        assert hint(NOW) == ONSET - BASELINE_WINDOW
        store.engine.dispose()

    def test_a_missing_database_is_no_history_and_is_not_created(self, tmp_path: Path) -> None:
        """Before the first start there is no database: the hint answers None without creating the file."""
        db = tmp_path / "none.db"
        assert open_incident_history(f"sqlite:///{db}")(NOW) is None
        assert open_incident_history(str(db))(NOW) is None
        assert not db.exists()

    def test_warmup_is_the_longest_any_service_needs(self) -> None:
        """The warm-up is the largest of every policy for the queried signals, including per-service overrides."""
        plain = config_from_dict({"defaults": {"warmup": 30}, "signals": {"error_rate": {"detectors": ["robust"]}}})
        assert detector_warmup_samples(plain, ["error_rate"]) == 30
        slow = config_from_dict(
            {
                "defaults": {"warmup": 30},
                "signals": {"error_rate": {"detectors": ["robust"]}},
                "services": {"batch": {"signals": {"error_rate": {"warmup": 90}}}},
            }
        )
        assert detector_warmup_samples(slow, ["error_rate"]) == 90
        lik = config_from_dict(
            {
                "signals": {
                    "error_rate": {"detectors": ["robust", "likelihood"], "lik_window": 20, "lik_min_history": 100}
                }
            }
        )
        assert detector_warmup_samples(lik, ["error_rate"]) == 120
