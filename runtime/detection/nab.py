"""Score the detection defaults on NAB (Numenta Anomaly Benchmark) files with NAB's own scorer.

Every file is an independent stream through a fresh `DetectionEngine` (same defaults for all);
every anomaly the engine raises (shift, spike, ...) is an alarm at its sample's timestamp.
"""

from __future__ import annotations

import importlib.util
import math
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


# ----------------------------------------------------------------------------------------------
# Choosing defaults honestly: leave-one-category-out over candidate settings
# ----------------------------------------------------------------------------------------------

#: one-at-a-time neighbours of the shipped `unknown_signals` settings (the LOCO grid)
NEIGHBOURHOOD: dict[str, tuple[Any, ...]] = {
    "lik_level_alpha": (0.01, 0.05),
    "lik_error_alpha": (0.001, 0.01),
    "lik_window": (10, 40),
    "lik_history_alpha": (0.0005, 0.002),
    "lik_min_history": (200, 800),
    "lik_tail": (1e-3, 1e-5),
    "lik_cooldown": (200, 1000),
    "lik_season_alpha": (0.3,),
    "lik_surprise": (1.0,),
    "lik_combine": ("mean", "min"),
    "lik_forecasters": (("level", "season"), ("last", "level", "season", "week")),
    "lik_week_bins": (1008,),
    "lik_quiet": (50, 200),
    "surprise": (1.0, 1.3),  # the robust detector's self-calibration, also part of the ensemble
    "refractory": (50, 200),
}


def neighbourhood() -> list[dict[str, Any]]:
    """The shipped setting (`{}`) and each of its one-at-a-time neighbours, as `unknown_signals` overrides."""
    out: list[dict[str, Any]] = [{}]
    for key, values in NEIGHBOURHOOD.items():
        out.extend({key: value} for value in values)
    return out


def raw_scores(data_dir: Path, overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-file scorer output for the defaults with `overrides` merged into `unknown_signals`."""
    from runtime.detection.config import config_from_dict

    config = config_from_dict({"unknown_signals": overrides}) if overrides else None
    report = evaluate(data_dir, config)
    files: dict[str, dict[str, Any]] = report["files"]
    return files


def normalised(files: dict[str, dict[str, Any]], names: list[str]) -> float | None:
    """NAB's normalised standard-profile score of a group of files (None for a group without windows)."""
    windows = int(sum(files[n]["windows"] for n in names))
    if windows == 0:
        return None
    raw = float(sum(files[n]["raw"]["standard"] for n in names))
    return 100.0 * (raw + windows) / (2.0 * windows)  # null detector -windows, perfect +windows


def leave_one_category_out(
    candidates: list[dict[str, Any]], results: list[dict[str, dict[str, Any]]]
) -> dict[str, Any]:
    """For each category: the candidate best on the other categories, and its score on the held-out one.

    `results[i]` is `raw_scores` of `candidates[i]`. The pooled held-out score sums each held-out
    category's raw score under the candidate chosen without it.
    """
    names = list(results[0])
    categories: dict[str, list[str]] = {}
    for name in names:
        categories.setdefault(name.split("/", 1)[0], []).append(name)
    per_category: dict[str, Any] = {}
    held_raw = 0.0
    for category, members in categories.items():
        others = [n for n in names if n not in members]
        best = max(range(len(candidates)), key=lambda i: normalised(results[i], others) or -math.inf)
        per_category[category] = {
            "chosen": candidates[best],
            "held_out": normalised(results[best], members),
            "in_sample": normalised(results[0], members),
        }
        held_raw += sum(results[best][n]["raw"]["standard"] for n in members)
    windows = sum(results[0][n]["windows"] for n in names)
    return {
        "in_sample": normalised(results[0], names),
        "held_out": 100.0 * (held_raw + windows) / (2.0 * windows),
        "categories": per_category,
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m runtime.detection.nab DIR`: in-sample and leave-one-category-out NAB scores."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m runtime.detection.nab NAB_DIR", file=sys.stderr)
        return 2
    data_dir = Path(args[0])
    candidates = neighbourhood()
    results = []
    for overrides in candidates:
        files = raw_scores(data_dir, overrides)
        results.append(files)
        print(f"{normalised(files, list(files)):6.2f}  {overrides or 'shipped defaults'}", flush=True)
    loco = leave_one_category_out(candidates, results)
    print(f"\nshipped defaults, in-sample: {loco['in_sample']:.2f}; leave-one-category-out: {loco['held_out']:.2f}")
    for category, entry in loco["categories"].items():
        inside = "n/a" if entry["in_sample"] is None else f"{entry['in_sample']:.1f}"
        held = "n/a" if entry["held_out"] is None else f"{entry['held_out']:.1f}"
        print(f"  {category:24s} in-sample {inside:>6s}  held-out {held:>6s}  chosen {entry['chosen'] or 'shipped'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
