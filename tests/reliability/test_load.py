"""Sustained push load against a real daemon: backpressure instead of unbounded queues, memory bounded.

CI-sized (10 s); `homeostat reliability load --seconds 300` gives the docs figure.
"""

from __future__ import annotations

from pathlib import Path

from runtime.chaos import free_port
from runtime.reliability_cli import LOAD_TOKEN, run_load, running_daemon


def test_push_under_load_answers_429_with_retry_after_and_keeps_ingesting(tmp_path: Path) -> None:
    """A small buffer under four clients yields 429s that all carry Retry-After, no errors, and steady ingestion."""
    port = free_port()
    with running_daemon(tmp_path, port=port, max_buffered=2_000, poll_s=1.0) as proc:
        report = run_load(
            f"http://127.0.0.1:{port}", token=LOAD_TOKEN, seconds=10, clients=4, batch=500, pid=proc.pid, seed=3
        )
        assert proc.poll() is None, "the daemon survived the load"
    print(report.render())
    assert report.errors == {}
    assert report.throttled > 0, "a 2,000-item buffer drained once a second must push back"
    assert report.throttled_without_retry_after == 0
    assert report.accepted > 0
    assert report.ingested == report.accepted, "every accepted sample reached the loop; none was dropped silently"
    rss = report.rss_summary()
    assert rss["max"] < rss["start"] + 300, f"daemon memory must stay bounded under load: {report.rss_mb}"
