"""`homeostat sim ...` commands: the simulated fleet, its scenarios and the healing benchmark."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from simulations import Fleet, Scenario
    from simulations.bench import PlayOutcome, ScenarioScore

app = typer.Typer(help="Run the simulated LLM fleet: scenarios, HTTP server, benchmark.", no_args_is_help=True)


def _fmt_s(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 600:
        return f"{value:.0f}s"
    if value < 3600:
        return f"{value / 60:.1f}m"
    hours, minutes = divmod(round(value / 60), 60)
    return f"{hours}h{minutes:02d}m"


def _flag(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "NO")


def _load_all(directory: Path | None) -> list[Scenario]:
    from simulations import ScenarioError, builtin_scenarios, load_scenario, load_scenarios

    try:
        return load_scenarios(directory) if directory else [load_scenario(p) for p in builtin_scenarios()]
    except ScenarioError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command("list")
def list_scenarios(
    scenarios: Annotated[Path | None, typer.Option(help="folder of scenario YAML files (default: shipped)")] = None,
) -> None:
    """List scenarios with their ground truth."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Scenarios")
    table.add_column("name", no_wrap=True)
    for column in ("duration", "cause", "service", "acceptable", "incident?", "injections"):
        table.add_column(column)
    for sc in _load_all(scenarios):
        truth = sc.ground_truth
        kinds = ", ".join(
            f"{i.type}:{getattr(i, 'fault', None) or getattr(i, 'kind', '') or ''}@{i.at / 60:g}m"
            for i in sc.injections
        )
        table.add_row(
            sc.name,
            _fmt_s(sc.duration_s),
            truth.cause.value if truth.cause else "(control)",
            truth.service or "-",
            ", ".join(a.value for a in truth.acceptable_actions) or "-",
            "yes" if truth.incident_expected else "no",
            kinds or "-",
        )
    Console().print(table)


@app.command("validate")
def validate(paths: Annotated[list[Path], typer.Argument(help="scenario files to check")]) -> None:
    """Check scenario files; print file:line and the field for every problem. Exit 1 if any is invalid."""
    from simulations import ScenarioError, load_scenario

    bad = 0
    for path in paths:
        try:
            sc = load_scenario(path)
        except ScenarioError as exc:
            bad += 1
            typer.echo(f"INVALID {exc}", err=True)
        else:
            typer.echo(f"ok {path}: {sc.name} ({len(sc.injections)} injections, seed {sc.seed})")
    if bad:
        raise typer.Exit(1)


@app.command("serve")
def serve(
    scenario: Annotated[Path, typer.Option(help="scenario YAML whose fleet and injections to serve")],
    port: Annotated[int, typer.Option(help="TCP port")] = 8700,
    host: Annotated[str, typer.Option(help="bind address (loopback by default)")] = "127.0.0.1",
    speed: Annotated[float, typer.Option(help="virtual seconds per real second; 0 = only POST /advance")] = 60.0,
) -> None:
    """Serve the scenario's fleet over HTTP (telemetry, /metrics, /actions, /advance, /faults)."""
    import uvicorn

    from simulations import ScenarioError, load_scenario
    from simulations.http import create_app

    try:
        sc = load_scenario(scenario)
    except ScenarioError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if speed < 0:
        typer.echo("error: --speed must be >= 0", err=True)
        raise typer.Exit(2)
    app_ = create_app(sc.build_fleet(), speed=speed or None, scenario_name=sc.name)
    typer.echo(f"serving scenario {sc.name} on http://{host}:{port} at {speed:g}x")
    uvicorn.run(app_, host=host, port=port, log_level="warning")


# --------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------


def _iso(value: str | datetime | None) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def outcome_from_gameday(scenario: Scenario, result: Any, fleet: Fleet | None) -> PlayOutcome:
    """Turn what `runtime.gameday.play_scenario` returned into the scorer's PlayOutcome.

    Accepts a PlayOutcome as is. Otherwise reads incidents from the result and, from the fleet
    the game day ran on, every action call (with its time) and every fault's life."""
    from simulations.bench import ActionTaken, FaultOutcome, IncidentOutcome, PlayOutcome

    if isinstance(result, PlayOutcome):
        return result
    incidents = []
    for row in getattr(result, "incidents", []):
        final = bool(getattr(row, "final", False))
        incidents.append(
            IncidentOutcome(
                id=str(row.id),
                opened_at=_iso(getattr(row, "onset", None) or row.opened_at) or scenario.start,
                services=tuple(getattr(row, "services", ()) or ()),
                cause=getattr(row, "cause", None),
                state=str(getattr(row, "state", "open")),
                closed_at=_iso(row.updated_at) if final else None,
            )
        )
    actions: list[ActionTaken] = []
    if fleet is not None:
        actions = [ActionTaken(action=r.action, target=r.target, ts=r.ts, status=r.status) for r in fleet.action_log]
    for denied in getattr(result, "denied", []) or []:
        actions.append(
            ActionTaken(
                action=str(denied["action"]),
                target=str(denied["target"]),
                ts=_iso(denied.get("ts")) or scenario.start,
                status="denied",
            )
        )
    faults = tuple(FaultOutcome.from_record(r) for r in fleet.fault_log()) if fleet is not None else ()
    return PlayOutcome(
        scenario=scenario.name,
        controller="homeostat",
        incidents=tuple(incidents),
        actions=tuple(actions),
        faults=faults,
        ended_at=getattr(result, "end", None) or (fleet.now if fleet is not None else None),
    )


def play_homeostat(scenario: Scenario) -> PlayOutcome:
    """Play one scenario through the real loop (runtime.gameday) and collect its outcome."""
    from runtime.gameday import play_scenario
    from simulations import Scenario

    built: list[Fleet] = []

    class _Recording(Scenario):
        """The same scenario; remembers the fleet the game day builds so the score can read it."""

        def build_fleet(self) -> Fleet:
            fleet = super().build_fleet()
            built.append(fleet)
            return fleet

    result = play_scenario(_Recording(spec=scenario.spec, path=scenario.path))
    return outcome_from_gameday(scenario, result, built[-1] if built else None)


def _score_table(title: str, rows: list[ScenarioScore]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    table.add_column("scenario", no_wrap=True)
    for column in ("cause", "detected", "ttd", "diagnosis", "action", "ttr", "false", "unsafe", "denied"):
        table.add_column(column)
    for s in rows:
        table.add_row(
            s.scenario,
            s.cause or "(control)",
            _flag(s.detected),
            _fmt_s(s.time_to_detect_s),
            _flag(s.diagnosis_correct),
            _flag(s.action_correct),
            _fmt_s(s.time_to_recover_s) if s.recovered or s.control else "never",
            str(s.false_actions + s.false_incidents) if s.control else str(s.false_incidents),
            str(s.unsafe_actions),
            str(s.denied_actions),
        )
    return table


def run_bench(
    scenarios: list[Scenario], *, json_out: Path | None = None, baseline: bool = True, quiet: bool = False
) -> dict[str, Any]:
    """Play every scenario through Homeostat (and the baseline), score, print, optionally write JSON."""
    from rich.console import Console
    from rich.table import Table

    from simulations.baseline import play_baseline
    from simulations.bench import BenchReport, score, summarize

    console = Console()
    started = time.perf_counter()
    ours = []
    theirs = []
    for sc in scenarios:
        ours.append(score(sc, play_homeostat(sc)))
        if baseline:
            theirs.append(score(sc, play_baseline(sc)))
    elapsed = time.perf_counter() - started
    overall = summarize(ours, controller="homeostat")
    base = summarize(theirs, controller="baseline")
    report = BenchReport(
        overall=overall,
        baseline=base,
        scenarios=tuple(ours),
        baseline_scenarios=tuple(theirs),
        notes=(f"{len(scenarios)} scenarios played in {elapsed:.1f}s wall-clock",),
    )
    data = report.model_dump(mode="json")
    if not quiet:
        console.print(_score_table("Homeostat", ours))
        if baseline:
            console.print(_score_table("Baseline (static thresholds, roll back last change)", theirs))
        summary = Table(title="Overall")
        summary.add_column("metric")
        summary.add_column("homeostat")
        summary.add_column("baseline")
        for key in (
            "detection_rate",
            "mttd_s",
            "diagnosis_accuracy",
            "right_action_rate",
            "mttr_s",
            "recovery_rate",
            "false_actions",
            "false_incidents",
            "unsafe_actions",
            "wrong_actions",
            "denied_actions",
        ):
            summary.add_row(key, str(data["overall"][key]), str(data["baseline"][key]) if baseline else "-")
        console.print(summary)
        console.print(f"{len(scenarios)} scenarios in {elapsed:.1f}s")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return data


def register_bench(target: typer.Typer, name: str = "scenarios") -> None:
    """Register the benchmark command on another sub-app too (e.g. `homeostat bench scenarios`)."""
    target.command(name)(bench)


@app.command("bench")
def bench(
    scenarios: Annotated[Path | None, typer.Option(help="folder of scenario YAML files (default: shipped)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the report as JSON here")] = None,
    baseline: Annotated[bool, typer.Option(help="also play the threshold-and-rollback baseline")] = True,
    log_level: Annotated[str, typer.Option(help="log level of the loop's JSON logs on stderr")] = "WARNING",
) -> None:
    """Play every scenario through the real loop in virtual time and score it against ground truth."""
    from runtime.logs import configure_logging

    configure_logging(log_level)
    run_bench(_load_all(scenarios), json_out=json_out, baseline=baseline)


# --------------------------------------------------------------------------------------------
# Seed check: one scenario, its randomness re-drawn
# --------------------------------------------------------------------------------------------


def parse_seeds(text: str) -> list[int]:
    """`1-8`, `3`, `1,4,9` or `1-3,7` -> the seeds in order; ValueError naming the bad part."""
    seeds: list[int] = []
    for raw in text.split(","):
        part = raw.strip()
        low, dash, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise ValueError(f"--seeds: {part!r} is not a seed or a range like 1-8") from None
        if first < 0 or last < first:
            raise ValueError(f"--seeds: {part!r} must be non-negative and low-high with low <= high")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise ValueError("--seeds: no seeds given")
    return seeds


def _find_scenario(name: str) -> Scenario:
    """A shipped scenario by name, or a scenario YAML by path (`runtime.simulate.resolve_scenario`)."""
    from runtime.simulate import SimulateError, resolve_scenario
    from simulations import ScenarioError, load_scenario

    try:
        return load_scenario(resolve_scenario(name))
    except (SimulateError, ScenarioError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


def play_seed(scenario: Scenario, seed: int) -> dict[str, Any]:
    """Play `scenario` with its seed replaced by `seed` through the real loop; what it diagnosed and did."""
    from dataclasses import replace

    from runtime.gameday import play_scenario

    reseeded = replace(scenario, spec=scenario.spec.model_copy(update={"seed": seed}))
    result = play_scenario(reseeded)
    truth = scenario.ground_truth
    causes = [row.cause for row in result.incidents if row.cause]
    actions = [f"{row.action}:{row.target}" for row in result.incidents if row.action]
    applied = [f"{a['action']}:{a['target']}:{a['status']}" for a in result.actions]
    acceptable = {a.value for a in truth.acceptable_actions}
    return {
        "seed": seed,
        "incidents": len(result.incidents),
        "causes": causes,
        "actions": actions,
        "applied": applied,
        "pages": len(result.pages),
        "cause_correct": None if truth.cause is None else truth.cause.value in causes,
        "action_correct": None if truth.cause is None else any(a.split(":", 1)[0] in acceptable for a in actions),
    }


@app.command("seeds")
def seeds_command(
    scenario: Annotated[str, typer.Option(help="shipped scenario name (e.g. safety_regression) or a YAML path")],
    seeds: Annotated[str, typer.Option(help="seeds to play in place of the scenario's own: 1-8, 3, 1,4,9")] = "1-8",
    json_out: Annotated[Path | None, typer.Option("--json", help="write the per-seed results as JSON here")] = None,
    log_level: Annotated[str, typer.Option(help="log level of the loop's JSON logs on stderr")] = "WARNING",
) -> None:
    """Play one scenario once per seed (its noise re-drawn) and print per seed the diagnosed cause and the action."""
    from runtime.logs import configure_logging

    try:
        chosen = parse_seeds(seeds)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    sc = _find_scenario(scenario)
    configure_logging(log_level)
    truth = sc.ground_truth
    expected = truth.cause.value if truth.cause else "(control: no incident)"
    acceptable = ", ".join(a.value for a in truth.acceptable_actions) or "-"
    typer.echo(f"{sc.name} (own seed {sc.seed}); truth: {expected}; acceptable: {acceptable}")
    rows = []
    for seed in chosen:
        row = play_seed(sc, seed)
        rows.append(row)
        typer.echo(
            f"seed {seed:>3}  cause {','.join(row['causes']) or '-':<28} action {','.join(row['actions']) or '-'}"
            f"  (cause {_flag(row['cause_correct'])}, action {_flag(row['action_correct'])})"
        )
    if truth.cause is not None:
        right = sum(1 for r in rows if r["cause_correct"])
        acted = sum(1 for r in rows if r["action_correct"])
        typer.echo(f"cause right in {right} of {len(rows)} seeds; an acceptable action in {acted} of {len(rows)}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        report = {"scenario": sc.name, "own_seed": sc.seed, "truth": expected, "seeds": rows}
        json_out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n", encoding="utf-8")
