"""`homeostat detect`: offline detection over a samples file, through the daemon's own engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from domain import Anomaly, to_jsonable


def anomaly_line(anomaly: Anomaly, full: bool) -> str:
    if full:
        return json.dumps(to_jsonable(anomaly), sort_keys=True)
    return json.dumps(
        {
            "service": anomaly.service,
            "signal": anomaly.signal,
            "ts": anomaly.ts.isoformat(),
            "detector": anomaly.detector,
            "kind": anomaly.kind,
            "direction": anomaly.direction.value,
            "severity": anomaly.severity.value,
        }
    )


def detect(
    samples: Annotated[Path, typer.Option("--samples", help="JSONL ({ts, service, signal, value}) or CSV")],
    json_out: Annotated[
        bool, typer.Option("--json", help="print every anomaly field (id, baseline, detail...)")
    ] = False,
    service: Annotated[str | None, typer.Option(help="service name for a CSV file")] = None,
    signal: Annotated[str | None, typer.Option(help="signal name for a CSV file")] = None,
    config: Annotated[Path | None, typer.Option(help="detection config YAML merged over the defaults")] = None,
) -> None:
    """Run detection over a samples file and print the anomalies, one JSON object a line."""
    from runtime.detection.config import DetectionConfigError, load_detection_config
    from runtime.detection.engine import DetectionEngine
    from runtime.detection.samples_io import ReadStats, SamplesFileError, read_samples

    try:
        engine = DetectionEngine(load_detection_config(config) if config else None)
        stats = ReadStats()
        count = 0
        for row in read_samples(samples, service=service, signal=signal, stats=stats):
            for anomaly in engine.observe_value(row.service, row.signal, row.ts, row.value):
                typer.echo(anomaly_line(anomaly, json_out))
                count += 1
    except (SamplesFileError, DetectionConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    dropped = dict(stats.unreadable + engine.dropped)
    summary = {"accepted": engine.accepted, "dropped": dropped, "anomalies": count, "series": engine.series_count}
    if stats.examples:
        summary["first_unreadable"] = stats.examples
    typer.echo(json.dumps(summary, sort_keys=True), err=True)


def register(app: typer.Typer) -> None:
    """Add `homeostat detect` to the root command line."""
    app.command("detect")(detect)
