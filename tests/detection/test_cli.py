"""`homeostat detect` and `homeostat bench detection` through the real command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from runtime.detection import bench
from runtime.detection.cli import register

app = typer.Typer()
register(app)
app.command("noop", hidden=True)(lambda: None)  # keep `detect` a sub-command, as under `homeostat`


def write_jsonl(path: Path, shift_at: int = 100, n: int = 160) -> Path:
    lines = []
    for i in range(n):
        value = 600.0 + (i % 5) * 7.0
        if i >= shift_at:
            value *= 3
        lines.append(
            json.dumps({"ts": 1_767_225_600 + 10 * i, "service": "chat", "signal": "latency_p95_ms", "value": value})
        )
    lines.insert(50, '{"ts": 1767226000, "service": "chat", "signal": "latency_p95_ms", "value": "oops"}')
    lines.insert(60, "not json")
    lines.insert(70, json.dumps({"ts": 1_767_225_600, "service": "chat", "signal": "latency_p95_ms", "value": 1.0}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_detect_prints_one_json_line_per_anomaly_and_counts_bad_rows(tmp_path):
    """A JSONL file with a latency shift prints that shift as JSON and reports the dropped rows."""
    result = CliRunner().invoke(app, ["detect", "--samples", str(write_jsonl(tmp_path / "s.jsonl"))])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(a["signal"], a["kind"], a["direction"]) for a in lines] == [("latency_p95_ms", "shift", "up")]
    assert set(lines[0]) >= {"service", "signal", "ts", "detector", "direction", "severity"}
    summary = json.loads(result.stderr.strip().splitlines()[-1])
    assert summary["dropped"] == {"bad_json": 1, "not_a_number": 1, "out_of_order": 1}


def test_detect_reads_a_nab_style_csv(tmp_path):
    """A `timestamp,value` CSV with naive timestamps runs as the named series."""
    rows = ["timestamp,value"] + [
        f"2014-04-01 {i // 12:02d}:{(i % 12) * 5:02d}:00,{(50.0 if i < 150 else 90.0) + (i % 3)}" for i in range(240)
    ]
    path = tmp_path / "x.csv"
    path.write_text("\n".join(rows) + "\n")
    result = CliRunner().invoke(app, ["detect", "--samples", str(path), "--service", "m", "--signal", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    found = [json.loads(line) for line in result.stdout.splitlines()]
    onset = datetime(2014, 4, 1, 12, 30, tzinfo=UTC)
    assert found
    assert 0 <= (datetime.fromisoformat(found[0]["ts"]) - onset).total_seconds() <= 3 * 300
    assert "id" in found[0] and "detail" in found[0]


def test_detect_csv_without_series_names_is_a_clear_error(tmp_path):
    """A CSV without --service/--signal exits 2 naming what is missing."""
    path = tmp_path / "x.csv"
    path.write_text("timestamp,value\n2014-04-01 00:00:00,1\n")
    result = CliRunner().invoke(app, ["detect", "--samples", str(path)])
    assert result.exit_code == 2
    assert "--service and --signal" in result.stderr


def test_bench_reports_the_documented_keys(tmp_path):
    """The bench writes stage and raw ADWIN throughput, their ratio and memory for 10k series."""
    bench_app = typer.Typer()
    bench.register(bench_app)
    out = tmp_path / "bench.json"
    args = ["detection", "--series", "20", "--ticks", "50", "--memory-series", "50", "--json", str(out)]
    result = CliRunner().invoke(bench_app, args)
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert {"stage_samples_per_s", "raw_adwin_updates_per_s", "ratio", "memory_mb_10k_series"} <= set(figures)
    expected = figures["stage_samples_per_s"] / figures["raw_adwin_updates_per_s"]
    assert figures["ratio"] == pytest.approx(expected, rel=0.01, abs=1e-4)
