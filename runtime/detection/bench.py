"""`homeostat bench detection`: stage throughput beside raw river ADWIN, memory per series, NAB score."""

from __future__ import annotations

import gc
import json
import math
import random
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from runtime.detection.config import DetectionConfig

_SIGNALS = ("latency_p95_ms", "error_rate", "quality_score", "tokens_per_request", "gpu_temperature")
_LEVELS = {"latency_p95_ms": 600.0, "error_rate": 0.01, "quality_score": 0.85, "tokens_per_request": 900.0}


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except OSError:
        return float("nan")
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def make_polls(n_series: int, n_ticks: int, seed: int = 0) -> list[list[Any]]:
    """`n_ticks` polls, each one sample of every series, with healthy noise (seeded)."""
    from domain import Sample

    rng = random.Random(seed)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    keys = [(f"svc{i // len(_SIGNALS)}", _SIGNALS[i % len(_SIGNALS)]) for i in range(n_series)]
    polls = []
    for tick in range(n_ticks):
        ts = t0 + timedelta(seconds=10 * tick)
        polls.append(
            [
                Sample(service=svc, signal=sig, ts=ts, value=_LEVELS.get(sig, 70.0) * (1 + rng.gauss(0, 0.03)))
                for svc, sig in keys
            ]
        )
    return polls


def measure_throughput(n_series: int = 1000, n_ticks: int = 200, seed: int = 0, chunks: int = 4) -> dict[str, float]:
    """Samples/s of the detection stage (after warm-up) and of a raw ADWIN.update loop on the same values.

    The stage is what the daemon runs per poll: `DetectionEngine.observe_batch` on the poll as
    the sources hand it over (a `SampleBatch`: samples plus their columns, built while parsing),
    through to the list of anomalies. Stage and raw loop are timed in alternating chunks so
    both see the same machine load; the ratio is the figure to compare across machines.
    """
    from river import drift

    from runtime.detection.columnar import kernels_ready
    from runtime.detection.engine import DetectionEngine
    from runtime.detection.intake import SampleBatch

    kernels_ready(wait=True)  # load the compiled loops first (a daemon loads them in a thread)
    polls = make_polls(n_series, n_ticks, seed)
    batches = [SampleBatch(poll) for poll in polls]  # what a source builds while it parses a poll
    engine = DetectionEngine()
    listed = DetectionEngine()
    warm = 40
    for batch, poll in zip(batches[:warm], polls[:warm], strict=True):
        engine.observe_batch(batch)
        listed.observe_batch(poll)
    timed = list(range(warm, n_ticks))
    count = n_series * len(timed)
    adwin = drift.ADWIN()  # type: ignore[no-untyped-call]
    stage_s = list_s = raw_s = 0.0
    gc.collect()
    size = max(1, -(-len(timed) // chunks))
    for start in range(0, len(timed), size):
        part = timed[start : start + size]
        started = time.perf_counter()
        for i in part:
            engine.observe_batch(batches[i])
        stage_s += time.perf_counter() - started
        started = time.perf_counter()
        for i in part:
            listed.observe_batch(polls[i])
        list_s += time.perf_counter() - started
        values = [s.value for i in part for s in polls[i]]
        started = time.perf_counter()
        for v in values:
            adwin.update(v)  # type: ignore[no-untyped-call]
        raw_s += time.perf_counter() - started
    stage = count / stage_s
    raw = count / raw_s
    return {
        "stage_samples_per_s": round(stage),
        "raw_adwin_updates_per_s": round(raw),
        "ratio": round(stage / raw, 4),
        "stage_us_per_sample": round(1e6 * stage_s / count, 3),
        "poll_rows": n_series,
        "adwin_block": engine.config.policy_for("svc0", "latency_p95_ms").adwin_block,
        "stage_from_sample_list_samples_per_s": round(count / list_s),
        "ratio_from_sample_list": round(count / list_s / raw, 4),
    }


def measure_memory(n_series: int = 10_000, n_ticks: int = 100) -> dict[str, float]:
    """Memory held by an engine watching `n_series` series past warm-up (tracemalloc and RSS)."""
    from runtime.detection.engine import DetectionEngine

    gc.collect()
    rss_before = _rss_mb()
    tracemalloc.start()
    engine = DetectionEngine()
    t0 = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    rng = random.Random(1)
    keys = [(f"svc{i // len(_SIGNALS)}", _SIGNALS[i % len(_SIGNALS)]) for i in range(n_series)]
    for tick in range(n_ticks):
        ts = t0 + 10 * tick
        for svc, sig in keys:
            engine.observe_value(svc, sig, ts, _LEVELS.get(sig, 70.0) * (1 + rng.gauss(0, 0.03)))
    gc.collect()
    traced, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_after = _rss_mb()
    snapshot_bytes = len(engine.snapshot())
    return {
        "memory_mb_10k_series": round(traced / 1e6 * 10_000 / n_series, 2),
        "bytes_per_series": round(traced / n_series),
        "rss_growth_mb": round(rss_after - rss_before, 2),
        "snapshot_bytes_per_series": round(snapshot_bytes / n_series),
        "series": engine.series_count,
    }


def _emit(figures: Any, json_out: Path | None) -> None:
    text = json.dumps(figures, indent=2, sort_keys=True)
    typer.echo(text)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(text + "\n")


def _floats(text: str, option: str) -> tuple[float, ...]:
    """`0,3,20` -> (0.0, 3.0, 20.0); exit 2 naming the option if a part is not a finite number."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(math.isfinite(v) for v in values):
        typer.echo(f"error: {option}: {text!r} is not a comma-separated list of numbers", err=True)
        raise typer.Exit(2)
    return values


def _check_nab(nab: Path | None) -> None:
    """Exit 2 before any measuring if `--nab` is not a NAB data folder."""
    if nab is not None and not (nab / "score.py").is_file():
        typer.echo(f"error: --nab: {nab}: not a NAB data folder (no score.py)", err=True)
        raise typer.Exit(2)


def _detection_config(path: Path | None) -> DetectionConfig | None:
    """`--config`, merged over the defaults; exit 2 naming its file, line and key if it is bad."""
    from runtime.detection.config import DetectionConfigError, load_detection_config

    try:
        return load_detection_config(path) if path is not None else None
    except (DetectionConfigError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


_JSON = Annotated[Path | None, typer.Option("--json", help="also write the figures to this JSON file")]

detection_app = typer.Typer(
    help="Detection figures (docs/DETECTION.md). Without a subcommand: throughput, memory, NAB.",
    invoke_without_command=True,
)


@detection_app.callback()
def bench_detection(  # noqa: PLR0917 - typer maps each option to a parameter
    ctx: typer.Context,
    json_out: _JSON = None,
    nab: Annotated[Path | None, typer.Option(help="NAB data folder: also score the defaults on it")] = None,
    series: Annotated[int, typer.Option(min=1, help="series in the throughput run")] = 1000,
    ticks: Annotated[int, typer.Option(min=41, help="polls in the throughput run (the first 40 are warm-up)")] = 200,
    memory_series: Annotated[int, typer.Option(min=1, help="series in the memory run")] = 10_000,
    config: Annotated[
        Path | None, typer.Option(help="detection config merged over the defaults, for the NAB run")
    ] = None,
) -> None:
    """Throughput of the detection stage vs raw river ADWIN, memory for 10,000 series, NAB score."""
    if ctx.invoked_subcommand is not None:
        return
    _check_nab(nab)
    nab_config = _detection_config(config)
    figures: dict[str, Any] = {}
    figures.update(measure_throughput(series, ticks))
    figures.update(measure_memory(memory_series))
    if nab is not None:
        from runtime.detection.nab import evaluate

        report = evaluate(nab, nab_config)
        typer.echo(report["text"])
        summary = report["summary"]["ALL"]
        figures["nab_standard"] = round(summary["normalized"]["standard"], 2)
        figures["nab_reward_low_fp"] = round(summary["normalized"]["reward_low_FP_rate"], 2)
        figures["nab_reward_low_fn"] = round(summary["normalized"]["reward_low_FN_rate"], 2)
        figures["nab_rows_per_s"] = round(report["run"]["rows"] / report["run"]["seconds"])
    _emit(figures, json_out)


@detection_app.command("seasonal")
def bench_seasonal(  # noqa: PLR0917 - typer maps each option to a parameter
    json_out: _JSON = None,
    series: Annotated[int, typer.Option(min=1, help="unknown series per poll")] = 100,
    days: Annotated[float, typer.Option(min=0.01, help="days of 5-minute samples")] = 4.0,
    amplitudes: Annotated[str, typer.Option(help="daily-cycle amplitudes to sweep (noise sd 2)")] = "0,3,20",
    seed: Annotated[int, typer.Option(help="seed of the noise and phases")] = 0,
    memory_series: Annotated[
        int, typer.Option(min=0, help="also measure memory of this many unknown series (batched vs one by one)")
    ] = 0,
) -> None:
    """us/row of unknown seasonal series: compiled batch path vs one sample at a time (identical anomalies)."""
    from runtime.detection.bench_seasonal import measure_adopt_release, measure_seasonal, measure_unknown_memory

    figures: dict[str, Any] = {
        "series": series,
        "days": days,
        "seed": seed,
        "rows": measure_seasonal(series, days, _floats(amplitudes, "--amplitudes"), seed=seed),
        "warm_series_release_and_adopt": measure_adopt_release(seed=seed),
    }
    if memory_series:
        figures["unknown_memory"] = measure_unknown_memory(memory_series, seed=seed)
    _emit(figures, json_out)


@detection_app.command("noise")
def bench_noise(  # noqa: PLR0917 - typer maps each option to a parameter
    json_out: _JSON = None,
    tails: Annotated[str, typer.Option(help="lik_tail values to sweep")] = "1e-4,1e-5,1e-6",
    series: Annotated[int, typer.Option(min=1, help="seeded series per noise kind")] = 5,
    length: Annotated[int, typer.Option(min=1, help="one-minute samples per series")] = 20_000,
    seed: Annotated[int, typer.Option(help="first seed (series i uses seed + i)")] = 0,
    nab: Annotated[Path | None, typer.Option(help="NAB data folder: also score NAB at each lik_tail")] = None,
) -> None:
    """False alarms per 10,000 samples on white noise, AR(1) (phi 0.9) and a random walk, by lik_tail."""
    from runtime.detection.bench_noise import measure_noise

    values = _floats(tails, "--tails")
    if not all(0.0 < t < 0.5 for t in values):
        typer.echo(f"error: --tails: {tails!r}: every lik_tail must be in (0, 0.5)", err=True)
        raise typer.Exit(2)
    _check_nab(nab)
    rows = measure_noise(values, n_series=series, length=length, seed=seed, nab=nab)
    _emit({"series_per_kind": series, "length": length, "seed": seed, "rows": rows}, json_out)


@detection_app.command("fleet")
def bench_fleet(
    json_out: _JSON = None,
    poll_s: Annotated[float, typer.Option(min=1.0, help="seconds of simulated time per poll")] = 60.0,
    scenarios: Annotated[Path | None, typer.Option(help="folder of scenario YAML files (default: shipped)")] = None,
    only: Annotated[list[str] | None, typer.Option("--scenario", help="only this scenario (repeatable)")] = None,
    config: Annotated[Path | None, typer.Option(help="detection config merged over the defaults")] = None,
) -> None:
    """Detection alone on every simulator scenario in polls: alarms on the faulty service, on controls."""
    from runtime.detection.bench_fleet import load, scan_fleet
    from simulations import ScenarioError

    detection_config = _detection_config(config)
    try:
        chosen = load(scenarios)
    except (ScenarioError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if only:
        missing = sorted(set(only) - {sc.name for sc in chosen})
        if missing:
            typer.echo(f"error: --scenario: unknown scenario(s) {', '.join(missing)}", err=True)
            raise typer.Exit(2)
        chosen = [sc for sc in chosen if sc.name in only]
    _emit(scan_fleet(chosen, poll_s, detection_config), json_out)


def register(app: typer.Typer) -> None:
    """Add the detection benchmarks to `homeostat bench` (`detection`, alias `detect`)."""
    app.add_typer(detection_app, name="detection")
    app.add_typer(detection_app, name="detect", hidden=True)
