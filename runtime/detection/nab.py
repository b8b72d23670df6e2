"""Score the detection defaults on NAB (Numenta Anomaly Benchmark) files with NAB's own scorer.

Every file is an independent stream through a fresh `DetectionEngine` (same defaults for all);
every anomaly the engine raises (shift, spike, ...) is an alarm at its sample's timestamp.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from runtime.detection.config import DetectionConfig
from runtime.detection.engine import DetectionEngine

NAB_SIGNAL = "value"  # NAB series are signals Homeostat does not know: watched both ways


def load_scorer(data_dir: Path) -> ModuleType:
    """Import the `score.py` that ships with the NAB subset (stdlib only)."""
    path = data_dir / "score.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: NAB scorer not found (expected score.py beside combined_windows.json)")
    spec = importlib.util.spec_from_file_location("homeostat_nab_score", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def alarms_for(name: str, timestamps: list[Any], values: list[float], config: DetectionConfig | None) -> list[int]:
    """Row indices at which a fresh engine raises an anomaly on one NAB stream."""
    engine = DetectionEngine(config)
    rows: list[int] = []
    index = {}
    for i, (moment, value) in enumerate(zip(timestamps, values, strict=True)):
        ts = moment.replace(tzinfo=moment.tzinfo or _utc()).timestamp()
        index[ts] = i
        for anomaly in engine.observe_value(name, NAB_SIGNAL, ts, value):
            rows.append(index.get(anomaly.ts.timestamp(), i))
    return rows


def _utc() -> Any:
    from datetime import UTC

    return UTC


def evaluate(data_dir: Path, config: DetectionConfig | None = None) -> dict[str, Any]:
    """NAB report (scorer's own structure) plus throughput of the detection over the corpus."""
    scorer = load_scorer(data_dir)
    corpus = scorer.load_corpus(str(data_dir))
    detections: dict[str, list[int]] = {}
    rows = 0
    started = time.perf_counter()
    for name, datafile in corpus.items():
        detections[name] = alarms_for(name, datafile.timestamps, datafile.values, config)
        rows += len(datafile)
    seconds = time.perf_counter() - started
    report: dict[str, Any] = scorer.score(corpus, detections, data_dir=str(data_dir))
    report["run"] = {"rows": rows, "seconds": seconds, "files": len(corpus)}
    report["text"] = scorer.format_report(report, title=f"NAB ({len(corpus)} files, {rows} rows)")
    return report
