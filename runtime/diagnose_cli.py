"""`homeostat diagnose ...`: offline post-incident diagnosis on exported telemetry, and its benchmark.

`homeostat diagnose --samples S.jsonl --anomaly A.json [--changes C.jsonl] [--topology T.json]`
loads the export into the same `TelemetryStore` the daemon uses and runs the same diagnoser.
`homeostat diagnose case DIR` does the same for a case folder; `homeostat diagnose bench
--cases DIR` measures root-cause ranking accuracy (AC@k) on a labelled set of case folders,
reading each case's truth only after its diagnosis is made.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from agents.diagnosis import DeterministicDiagnoser, RankedCandidate
from agents.diagnosis.ranker import FEATURES, FoldResult, RankingCase, TrainingCase, cross_validate, fit_with_inner_cv
from agents.ports import Diagnoser, IncidentContext
from domain import (
    Anomaly,
    ChangeEvent,
    ChangeKind,
    Diagnosis,
    Direction,
    Sample,
    Topology,
    bad_direction,
    to_jsonable,
)
from policies.yaml_lines import ConfigFileError
from runtime.telemetry import TelemetryStore
from runtime.topology_file import bare_service, load_topology_file

app = typer.Typer(
    help="Diagnose exported incidents offline and measure diagnosers on labelled case sets.",
    invoke_without_command=True,
    no_args_is_help=False,
)


class CaseFormatError(ValueError):
    """An export file is malformed; the message names the file, line and field."""


# ----------------------------------------------------------------------------------------------
# Loading exported telemetry
# ----------------------------------------------------------------------------------------------


def _utc(value: Any, where: str, name: str = "ts") -> datetime:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CaseFormatError(f"{where}: field {name!r} must be unix seconds (a number), got {value!r}")
    return datetime.fromtimestamp(float(value), tz=UTC)


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise CaseFormatError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    return value


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CaseFormatError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise CaseFormatError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


def _jsonl(path: Path) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise CaseFormatError(f"{path}: file not found") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise CaseFormatError(f"{where}: invalid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise CaseFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        rows.append((where, obj))
    return rows


def load_samples(path: Path) -> list[Sample]:
    """Samples from JSONL {"ts": unix s, "service", "signal", "value"[, "labels"]}."""
    samples: list[Sample] = []
    for where, obj in _jsonl(path):
        value = obj.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CaseFormatError(f"{where}: field 'value' must be a number, got {value!r}")
        labels = obj.get("labels", {})
        if not isinstance(labels, dict):
            raise CaseFormatError(f"{where}: field 'labels' must be an object of strings")
        try:
            samples.append(
                Sample(
                    service=_str(obj, "service", where),
                    signal=_str(obj, "signal", where),
                    ts=_utc(obj.get("ts"), where),
                    value=float(value),
                    labels={str(k): str(v) for k, v in labels.items()},
                )
            )
        except ValueError as exc:
            if isinstance(exc, CaseFormatError):
                raise
            raise CaseFormatError(f"{where}: {exc}") from None
    samples.sort(key=lambda s: (s.ts, s.service, s.signal))
    return samples


def load_anomaly(path: Path) -> Anomaly:
    """The incident's anchor anomaly from {"service", "signal", "ts"}."""
    obj = _read_json(path)
    where = str(path)
    if not isinstance(obj, dict):
        raise CaseFormatError(f"{where}: expected a JSON object with service, signal, ts")
    signal = _str(obj, "signal", where)
    direction = bad_direction(signal)
    return Anomaly(
        id=str(obj.get("id", "anomaly-0")),
        service=_str(obj, "service", where),
        signal=signal,
        detector="export",
        ts=_utc(obj.get("ts"), where),
        direction=direction if direction is not Direction.BOTH else Direction.UP,
        baseline=float(obj.get("baseline", 0.0)),
        current=float(obj.get("current", 0.0)),
        kind="alert",
    )


def load_changes(path: Path) -> list[ChangeEvent]:
    """Change events from JSONL {"ts", "service", "kind", "from", "to", "actor"[, "id"]}."""
    kinds = ", ".join(k.value for k in ChangeKind)
    out: list[ChangeEvent] = []
    for where, obj in _jsonl(path):
        kind = obj.get("kind")
        if kind not in {k.value for k in ChangeKind}:
            raise CaseFormatError(f"{where}: field 'kind' must be one of {kinds}, got {kind!r}")
        out.append(
            ChangeEvent(
                id=str(obj.get("id") or f"{path.name}:{where.rsplit(':', 1)[1]}"),
                service=_str(obj, "service", where),
                kind=ChangeKind(kind),
                from_value=str(obj.get("from", "")),
                to_value=str(obj.get("to", "")),
                ts=_utc(obj.get("ts"), where),
                actor=str(obj.get("actor", "unknown")),
            )
        )
    return out


def load_topology(path: Path | None, services: Sequence[str]) -> Topology:
    """The topology file (`runtime.topology_file`: {"edges": [[caller, callee], ...]} and/or a
    {"services": {...}} map), with every service seen in the samples included; a service the file
    does not describe is known by name only. Without a file, every service is known by name only."""
    if path is None:
        return Topology(services={s: bare_service(s) for s in sorted(services)})
    try:
        return load_topology_file(path, services)
    except ConfigFileError as exc:
        raise CaseFormatError(str(exc)) from None


MIN_TOPOLOGY_COVER = 0.5
"""A system topology (`--topology` of `case`, `bench` and `train`) serves a case without its own
topology.json when it names at least this share of the services in the case. An edge list cannot
name a service without calls, so a system's own graph may name well under all of them."""


@dataclass(frozen=True)
class SystemTopology:
    """A topology file given for a whole system, with the services it names."""

    path: Path
    services: frozenset[str]

    @classmethod
    def load(cls, path: Path) -> SystemTopology:
        """Read and check the file now, so a bad one is refused before any case is loaded."""
        return cls(path, frozenset(load_topology(path, ()).services))


def system_topologies(paths: Sequence[Path] | None) -> list[SystemTopology]:
    """The `--topology` files of `case`, `bench` and `train`, each read and checked now."""
    return [SystemTopology.load(p) for p in paths or ()]


def system_topology_for(services: AbstractSet[str], candidates: Sequence[SystemTopology]) -> Path | None:
    """The candidate that names most of `services` (the first on ties), if it names at least
    MIN_TOPOLOGY_COVER of them."""
    best: tuple[float, Path] | None = None
    for candidate in candidates:
        cover = len(services & candidate.services) / len(services) if services else 0.0
        if cover >= MIN_TOPOLOGY_COVER and (best is None or cover > best[0]):
            best = (cover, candidate.path)
    return best[1] if best else None


@dataclass(frozen=True)
class LoadedCase:
    context: IncidentContext
    store: TelemetryStore


def load_case(
    samples: Path,
    anomaly: Path,
    changes: Path | None = None,
    topology: Path | None = None,
    system_topologies: Sequence[SystemTopology] = (),
) -> LoadedCase:
    """An IncidentContext over the export: onset at the anomaly, `now` at the last sample.
    Without `topology`, the best-covering of `system_topologies` is used, if any covers enough
    (`system_topology_for`)."""
    rows = load_samples(samples)
    if not rows:
        raise CaseFormatError(f"{samples}: no samples")
    anchor = load_anomaly(anomaly)
    if topology is None and system_topologies:
        topology = system_topology_for({s.service for s in rows} | {anchor.service}, system_topologies)
    span = rows[-1].ts - rows[0].ts
    store = TelemetryStore(retention=span + timedelta(hours=1), max_points=max(4096, len(rows)))
    store.add_samples(rows)
    if changes is not None:
        store.add_changes(load_changes(changes))
    store.set_topology(load_topology(topology, sorted({s.service for s in rows} | {anchor.service})))
    now = max(rows[-1].ts, anchor.ts)
    ctx = IncidentContext(
        incident_id=anomaly.parent.name or "offline", onset=anchor.ts, now=now, anomalies=[anchor], telemetry=store
    )
    return LoadedCase(ctx, store)


def load_case_dir(folder: Path, system_topologies: Sequence[SystemTopology] = ()) -> LoadedCase:
    """A case folder: samples.jsonl, anomaly.json, optional changes.jsonl and topology.json; a
    folder without topology.json may use one of `system_topologies`. truth.json is never read here."""
    changes = folder / "changes.jsonl"
    topology = folder / "topology.json"
    return load_case(
        folder / "samples.jsonl",
        folder / "anomaly.json",
        changes if changes.exists() else None,
        topology if topology.exists() else None,
        system_topologies,
    )


# ----------------------------------------------------------------------------------------------
# Running a diagnoser
# ----------------------------------------------------------------------------------------------


def ranked_output(diagnoser: Diagnoser, ctx: IncidentContext) -> tuple[Diagnosis, list[RankedCandidate]]:
    """The diagnosis and the ranked candidates (the deterministic ranking backs every diagnoser)."""
    diagnosis = diagnoser.diagnose(ctx)
    ranked = DeterministicDiagnoser().ranked(ctx)
    if diagnosis.cause.value != "unknown":
        head = RankedCandidate(diagnosis.service, diagnosis.cause, diagnosis.confidence, diagnosis.evidence)
        # Nothing below the diagnosis claims more than it (an LLM may pick a less confident place).
        rest = [
            RankedCandidate(r.service, r.cause, min(r.confidence, diagnosis.confidence), r.evidence)
            for r in ranked
            if r.service != diagnosis.service
        ]
        ranked = [head, *rest]
    return diagnosis, ranked


def output_json(diagnosis: Diagnosis, ranked: Sequence[RankedCandidate]) -> dict[str, Any]:
    return {
        "ranked": [
            {
                "service": r.service,
                "cause": r.cause.value,
                "confidence": r.confidence,
                "evidence": to_jsonable(list(r.evidence)),
            }
            for r in ranked
        ],
        "abstain": diagnosis.cause.value == "unknown",
        "diagnosis": to_jsonable(diagnosis),
    }


def _render(diagnosis: Diagnosis, ranked: Sequence[RankedCandidate], top: int = 5) -> str:
    lines = [
        f"cause       {diagnosis.cause.value}",
        f"service     {diagnosis.service}" + (f"  (provider {diagnosis.provider})" if diagnosis.provider else ""),
        f"confidence  {diagnosis.confidence:.2f}",
        f"rationale   {diagnosis.rationale}",
        f"diagnoser   {diagnosis.diagnoser} {diagnosis.diagnoser_version}",
    ]
    for note in diagnosis.notes:
        lines.append(f"note        {note}")
    if diagnosis.alternatives:
        alts = ", ".join(f"{c.value} {p:.2f}" for c, p in diagnosis.alternatives)
        lines.append(f"alternatives {alts}")
    lines.append("evidence")
    for ev in diagnosis.evidence:
        if ev.type == "change":
            lines.append(
                f"  change {ev.change_id} on {ev.service}: {ev.kind.value} {ev.from_value!r} -> {ev.to_value!r}, "
                f"{ev.seconds_before_onset:.0f}s before onset"
            )
        else:
            lines.append(f"  series {ev.service}/{ev.signal}: {ev.before:.4g} -> {ev.after:.4g}")
    lines.append("ranked services")
    for i, r in enumerate(ranked[:top], start=1):
        lines.append(f"  {i}. {r.service:32s} {r.cause.value:22s} {r.confidence:.2f}")
    return "\n".join(lines)


LLM_ENV = {
    "HOMEOSTAT_LLM_BASE_URL": "OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM, Ollama, llama.cpp)",
    "HOMEOSTAT_LLM_MODEL": "model name served there",
    "HOMEOSTAT_LLM_API_KEY_ENV": "optional: NAME of the variable holding the API key (hosted APIs)",
    "HOMEOSTAT_LLM_TIMEOUT_S": "optional: per-incident time budget, default 60",
    "HOMEOSTAT_LLM_MAX_TOKENS": "optional: per-incident token budget, default 20000",
}


def llm_diagnoser_from_env(environ: Mapping[str, str] | None = None) -> Diagnoser:
    """The LLM diagnoser configured from HOMEOSTAT_LLM_* variables, deterministic as fallback."""
    from agents.diagnosis import LLMDiagnoser, build_openai_compatible_model

    env = os.environ if environ is None else environ
    missing = [k for k in ("HOMEOSTAT_LLM_BASE_URL", "HOMEOSTAT_LLM_MODEL") if not env.get(k)]
    if missing:
        described = "; ".join(f"{k}: {v}" for k, v in LLM_ENV.items())
        raise typer.BadParameter(f"--diagnoser llm needs {', '.join(missing)} set ({described})")
    try:
        timeout_s = float(env.get("HOMEOSTAT_LLM_TIMEOUT_S", "60"))
        max_tokens = int(env.get("HOMEOSTAT_LLM_MAX_TOKENS", "20000"))
        model = build_openai_compatible_model(
            env["HOMEOSTAT_LLM_BASE_URL"],
            env["HOMEOSTAT_LLM_MODEL"],
            env.get("HOMEOSTAT_LLM_API_KEY_ENV") or None,
            timeout_s=timeout_s,
        )
        return LLMDiagnoser(
            model, fallback=DeterministicDiagnoser(), timeout_s=timeout_s, max_tokens_per_incident=max_tokens
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def diagnoser_from_config(path: Path, kind: str | None = None) -> Diagnoser:
    """The diagnoser of a daemon config file's ``diagnoser:`` section, built by the daemon's own
    builder (`runtime.daemon.build_diagnoser`); `kind` overrides the section's kind."""
    from runtime.config import load_config
    from runtime.daemon import build_diagnoser

    try:
        section = load_config(path, check_files=False).diagnoser
    except ConfigFileError as exc:
        raise CaseFormatError("; ".join(str(e) for e in exc.errors)) from None
    if kind is None or kind == section.kind:
        return build_diagnoser(section)
    if kind == "deterministic":
        return DeterministicDiagnoser()
    missing = [k for k in ("base_url", "model") if getattr(section, k) is None]
    if missing:
        raise CaseFormatError(
            f"--diagnoser llm with --config {path}: its diagnoser section has no {' and '.join(missing)}"
        )
    return build_diagnoser(section.model_copy(update={"kind": "llm"}))


def _diagnoser(kind: str | None, config: Path | None = None) -> Diagnoser:
    if kind not in (None, "deterministic", "llm"):
        raise typer.BadParameter(f"--diagnoser must be 'deterministic' or 'llm', got {kind!r}")
    if config is not None:
        try:
            return diagnoser_from_config(config, kind)
        except CaseFormatError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
    if kind == "llm":
        return llm_diagnoser_from_env()
    return DeterministicDiagnoser()


SYSTEM_TOPOLOGY_HELP = (
    "a system's topology file (JSON or YAML, repeatable) for case folders without their own topology.json:"
    " a case uses the file that names the most of its services, if that is at least half of them"
)
DIAGNOSER_HELP = "deterministic | llm (default: the --config file's diagnoser section, else deterministic)"
CONFIG_HELP = "homeostat.yaml whose diagnoser: section to use, as the daemon does (else HOMEOSTAT_LLM_* variables)"


@app.callback()
def diagnose(
    ctx: typer.Context,
    *,
    samples: Annotated[Path | None, typer.Option(help="samples JSONL: {ts, service, signal, value} a line")] = None,
    anomaly: Annotated[Path | None, typer.Option(help="anomaly JSON: {service, signal, ts}")] = None,
    changes: Annotated[Path | None, typer.Option(help="changes JSONL: {ts, service, kind, from, to, actor}")] = None,
    topology: Annotated[
        Path | None,
        typer.Option(help="topology JSON or YAML: {edges: [[caller, callee]]} and/or {services}"),
    ] = None,
    diagnoser: Annotated[str | None, typer.Option(help=DIAGNOSER_HELP)] = None,
    config: Annotated[Path | None, typer.Option(help=CONFIG_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print {ranked: [...], abstain} as JSON")] = False,
) -> None:
    """Diagnose an exported incident offline, through the same code as the daemon."""
    if ctx.invoked_subcommand is not None:
        return
    if samples is None or anomaly is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0 if samples is None and anomaly is None else 2)
    try:
        case = load_case(samples, anomaly, changes, topology)
    except CaseFormatError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    diagnosis, ranked = ranked_output(_diagnoser(diagnoser, config), case.context)
    if as_json:
        typer.echo(json.dumps(output_json(diagnosis, ranked), indent=1, sort_keys=True))
    else:
        typer.echo(_render(diagnosis, ranked))


@app.command("case")
def case_command(
    folder: Annotated[Path, typer.Argument(help="case folder with samples.jsonl, anomaly.json[, topology.json]")],
    diagnoser: Annotated[str | None, typer.Option(help=DIAGNOSER_HELP)] = None,
    config: Annotated[Path | None, typer.Option(help=CONFIG_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
    topology: Annotated[list[Path] | None, typer.Option(help=SYSTEM_TOPOLOGY_HELP)] = None,
) -> None:
    """Print the diagnosis of one case folder with its evidence (truth.json is not read)."""
    try:
        case = load_case_dir(folder, system_topologies(topology))
    except CaseFormatError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    diagnosis, ranked = ranked_output(_diagnoser(diagnoser, config), case.context)
    if as_json:
        typer.echo(json.dumps(output_json(diagnosis, ranked), indent=1, sort_keys=True))
    else:
        typer.echo(_render(diagnosis, ranked, top=10))


# ----------------------------------------------------------------------------------------------
# Benchmark on labelled case folders
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseResult:
    case: str
    system: str
    fault: str
    truth: str
    ranked: tuple[str, ...]
    seconds: float

    def hit(self, k: int) -> bool:
        return self.truth in self.ranked[:k]


def case_folders(cases_dir: Path) -> tuple[list[Path], dict[str, str]]:
    """The case folders under `cases_dir` (sorted; each holds samples.jsonl and anomaly.json) and
    each case's system from the optional cases.csv index (`case_id,system,...`)."""
    if not cases_dir.is_dir():
        raise CaseFormatError(f"{cases_dir}: not a folder of case folders")
    systems: dict[str, str] = {}
    index = cases_dir / "cases.csv"
    if index.exists():
        with index.open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                systems[row.get("case_id", "")] = row.get("system", "") or "all"
    folders = sorted(p for p in cases_dir.iterdir() if (p / "samples.jsonl").exists() and (p / "anomaly.json").exists())
    if not folders:
        raise CaseFormatError(f"{cases_dir}: no case folders (each needs samples.jsonl and anomaly.json)")
    return folders, systems


def read_truth(folder: Path) -> dict[str, Any]:
    """A labelled case's truth.json; it must name the root cause as a 'root_cause_service' string."""
    truth = _read_json(folder / "truth.json")
    if not isinstance(truth, dict) or not isinstance(truth.get("root_cause_service"), str):
        raise CaseFormatError(f"{folder / 'truth.json'}: needs a 'root_cause_service' string")
    return truth


def run_bench(
    cases_dir: Path, diagnoser: Diagnoser, system_topologies: Sequence[SystemTopology] = ()
) -> list[CaseResult]:
    """Diagnose every case folder under `cases_dir` (sorted); truth is read after diagnosing."""
    folders, systems = case_folders(cases_dir)
    results: list[CaseResult] = []
    for folder in folders:
        case = load_case_dir(folder, system_topologies)
        started = time.perf_counter()
        _diagnosis, ranked = ranked_output(diagnoser, case.context)
        seconds = time.perf_counter() - started
        truth = read_truth(folder)  # only now, after the diagnosis is made
        results.append(
            CaseResult(
                case=folder.name,
                system=systems.get(folder.name, "all"),
                fault=str(truth.get("fault", "unknown")),
                truth=truth["root_cause_service"],
                ranked=tuple(r.service for r in ranked),
                seconds=seconds,
            )
        )
    return results


def summarise(results: Sequence[CaseResult]) -> list[dict[str, Any]]:
    """AC@1/3/5 and time per case: overall, per system, per fault, per system and fault."""
    groups: dict[str, list[CaseResult]] = defaultdict(list)
    for r in results:
        groups["all"].append(r)
        groups[f"system={r.system}"].append(r)
        groups[f"fault={r.fault}"].append(r)
        groups[f"system={r.system} fault={r.fault}"].append(r)
    rows = []
    for name in sorted(groups, key=lambda g: (g != "all", g.count("="), g)):
        members = groups[name]
        n = len(members)
        rows.append(
            {
                "group": name,
                "n": n,
                "ac1": round(sum(r.hit(1) for r in members) / n, 3),
                "ac3": round(sum(r.hit(3) for r in members) / n, 3),
                "ac5": round(sum(r.hit(5) for r in members) / n, 3),
                "mean_ms": round(1000 * sum(r.seconds for r in members) / n, 1),
            }
        )
    return rows


@app.command("bench")
def bench_command(
    cases: Annotated[Path, typer.Option(help="folder of case folders (and optionally cases.csv for systems)")],
    diagnoser: Annotated[str | None, typer.Option(help=DIAGNOSER_HELP)] = None,
    config: Annotated[Path | None, typer.Option(help=CONFIG_HELP)] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write per-case results and the summary here")] = None,
    topology: Annotated[list[Path] | None, typer.Option(help=SYSTEM_TOPOLOGY_HELP)] = None,
) -> None:
    """Root-cause-service AC@1/AC@3/AC@5 and time per case on a labelled case set."""
    try:
        results = run_bench(cases, _diagnoser(diagnoser, config), system_topologies(topology))
    except CaseFormatError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    rows = summarise(results)
    typer.echo(f"{'group':50s} {'n':>4s} {'AC@1':>6s} {'AC@3':>6s} {'AC@5':>6s} {'ms/case':>8s}")
    for row in rows:
        typer.echo(
            f"{row['group']:50s} {row['n']:4d} {row['ac1']:6.2f} {row['ac3']:6.2f} {row['ac5']:6.2f} "
            f"{row['mean_ms']:8.1f}"
        )
    if json_out is not None:
        payload = {
            "summary": rows,
            "cases": [
                {
                    "case": r.case,
                    "system": r.system,
                    "fault": r.fault,
                    "truth": r.truth,
                    "top5": list(r.ranked[:5]),
                    "rank": r.ranked.index(r.truth) + 1 if r.truth in r.ranked else None,
                    "ms": round(1000 * r.seconds, 2),
                }
                for r in results
            ],
        }
        json_out.write_text(json.dumps(payload, indent=1, sort_keys=True), encoding="utf-8")


@app.command("suite")
def suite_command(
    scenarios: Annotated[
        Path | None, typer.Option(help="folder of scenario YAML files (default: the shipped suite)")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write per-scenario results here")] = None,
) -> None:
    """Diagnosis accuracy on the simulator's scenario suite, played through the real control loop.

    A fault scenario counts as diagnosed when any incident the loop opened names one of the
    scenario's true causes (the benchmark's rule); controls are skipped.
    """
    import logging

    import structlog

    from runtime.gameday import play_scenario
    from simulations._scenario import builtin_scenarios, load_scenario

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    paths = sorted(scenarios.glob("*.yaml")) if scenarios else builtin_scenarios()
    rows: list[dict[str, Any]] = []
    for path in paths:
        scenario = load_scenario(path)
        if scenario.is_control:
            continue
        started = time.perf_counter()
        result = play_scenario(scenario)
        truths = sorted({f.cause.value for f in scenario.ground_truth.faults})
        causes = [i.cause for i in result.incidents]
        correct = any(c in truths for c in causes)
        rows.append(
            {
                "scenario": scenario.name,
                "truth": truths,
                "diagnosed": causes,
                "correct": correct,
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
        typer.echo(f"{'ok ' if correct else 'MISS'} {scenario.name:42s} truth={','.join(truths)} incidents={causes}")
    accuracy = sum(r["correct"] for r in rows) / len(rows) if rows else 0.0
    typer.echo(f"diagnosis accuracy {accuracy:.3f} ({sum(r['correct'] for r in rows)}/{len(rows)} fault scenarios)")
    if json_out is not None:
        json_out.write_text(json.dumps({"accuracy": accuracy, "scenarios": rows}, indent=1), encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# Training and cross-validating the learned ranker
# ----------------------------------------------------------------------------------------------


def load_ranking_cases(cases_dir: Path, system_topologies: Sequence[SystemTopology] = ()) -> list[RankingCase]:
    """Every labelled case folder under `cases_dir` as the learned ranker sees it; each case's
    truth is read only after its features are made."""
    folders, systems = case_folders(cases_dir)
    diagnoser = DeterministicDiagnoser()
    out: list[RankingCase] = []
    for folder in folders:
        case = load_case_dir(folder, system_topologies)
        table = diagnoser.rank_table(case.context)
        culprit = read_truth(folder)["root_cause_service"]
        if culprit not in table.services:
            raise CaseFormatError(
                f"{folder / 'truth.json'}: root_cause_service {culprit!r} has no samples in {folder / 'samples.jsonl'}"
            )
        out.append(
            RankingCase(
                case=folder.name,
                system=systems.get(folder.name, "all"),
                head=table.head,
                hand_order=table.hand_order,
                training=TrainingCase(folder.name, table.services, table.x, table.services.index(culprit)),
            )
        )
    return out


def _share(hits: int, n: int) -> float:
    return round(hits / n, 3) if n else 0.0


def select_features(cases: Sequence[RankingCase], names: Sequence[str]) -> list[RankingCase]:
    """The cases with only the named feature columns (in FEATURES order)."""
    unknown = [n for n in names if n not in FEATURES]
    if unknown or not names:
        raise CaseFormatError(
            f"--features: unknown feature(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(FEATURES)}"
        )
    columns = [i for i, name in enumerate(FEATURES) if name in set(names)]
    return [replace(c, training=replace(c.training, x=np.ascontiguousarray(c.training.x[:, columns]))) for c in cases]


def train_report(cases: Sequence[RankingCase], features: Sequence[str] = FEATURES) -> dict[str, Any]:
    """Cross-validation of the learned ranker against the hand ranking, then the weights fitted on
    all cases and how they score on them (resubstitution: a dev-set figure, not a held-out one).
    `features` names the columns the cases hold (FEATURES order)."""
    results = cross_validate(cases)
    protocols: dict[str, list[FoldResult]] = defaultdict(list)
    for r in results:
        protocols[r.name.split(":")[0]].append(r)
    summary = []
    for name, rows in protocols.items():
        n = sum(r.n for r in rows)
        summary.append(
            {
                "protocol": name,
                "n": n,
                "learned_ac1": _share(sum(r.learned_ac1 for r in rows), n),
                "learned_ac3": _share(sum(r.learned_ac3 for r in rows), n),
                "hand_ac1": _share(sum(r.hand_ac1 for r in rows), n),
                "hand_ac3": _share(sum(r.hand_ac3 for r in rows), n),
            }
        )
    weights, l2 = fit_with_inner_cv([c.training for c in cases])
    by_system: dict[str, list[RankingCase]] = defaultdict(list)
    for c in cases:
        by_system["all"].append(c)
        by_system[f"system={c.system}"].append(c)
    fitted = []
    for group, members in sorted(by_system.items(), key=lambda g: (g[0] != "all", g[0])):
        n = len(members)
        learned = [c.learned_order(weights) for c in members]
        fitted.append(
            {
                "group": group,
                "n": n,
                "learned_ac1": _share(sum(o[:1].count(c.truth) for o, c in zip(learned, members, strict=True)), n),
                "learned_ac3": _share(sum(c.truth in o[:3] for o, c in zip(learned, members, strict=True)), n),
                "hand_ac1": _share(sum(c.hand()[:1].count(c.truth) for c in members), n),
                "hand_ac3": _share(sum(c.truth in c.hand()[:3] for c in members), n),
            }
        )
    return {
        "folds": [
            {
                "fold": r.name,
                "n": r.n,
                "l2": r.l2,
                "learned_ac1": r.learned_ac1,
                "learned_ac3": r.learned_ac3,
                "hand_ac1": r.hand_ac1,
                "hand_ac3": r.hand_ac3,
            }
            for r in results
        ],
        "cv": summary,
        "fit_all": {
            "l2": l2,
            "features": list(features),
            "weights": {name: round(float(w), 6) for name, w in zip(features, weights, strict=True)},
            "scores": fitted,
        },
    }


@app.command("train")
def train_command(
    cases: Annotated[
        Path, typer.Option(help="folder of labelled case folders (truth.json each; cases.csv for systems)")
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="write the folds, CV summary and weights here")
    ] = None,
    features: Annotated[
        str | None, typer.Option(help="comma-separated feature names to use (default: all of them)")
    ] = None,
    topology: Annotated[list[Path] | None, typer.Option(help=SYSTEM_TOPOLOGY_HELP)] = None,
) -> None:
    """Fit the learned localisation ranker on labelled cases and cross-validate it against the hand
    ranking (odd/even halves, leave-one-system-out, 5-fold); print the weights fitted on all cases."""
    chosen: Sequence[str] = FEATURES
    try:
        if features is not None:
            chosen = [n.strip() for n in features.split(",") if n.strip()]
            select_features([], chosen)  # refuse unknown names before the slow load
        ranking_cases = load_ranking_cases(cases, system_topologies(topology))
        if features is not None:
            ranking_cases = select_features(ranking_cases, chosen)
            chosen = [n for n in FEATURES if n in set(chosen)]
    except CaseFormatError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    report = train_report(ranking_cases, chosen)
    typer.echo(f"{'fold':44s} {'n':>4s} {'l2':>5s} {'learned @1/@3':>14s} {'hand @1/@3':>11s}")
    for f in report["folds"]:
        typer.echo(
            f"{f['fold']:44s} {f['n']:4d} {f['l2']:5.1f} {f['learned_ac1']:6d} /{f['learned_ac3']:4d}"
            f" {f['hand_ac1']:4d} /{f['hand_ac3']:4d}"
        )
    typer.echo(
        f"\n{'protocol (pooled held-out)':30s} {'n':>4s} {'learned AC@1':>12s} {'AC@3':>5s}"
        f" {'hand AC@1':>10s} {'AC@3':>5s}"
    )
    for row in report["cv"]:
        typer.echo(
            f"{row['protocol']:30s} {row['n']:4d} {row['learned_ac1']:12.3f} {row['learned_ac3']:5.3f}"
            f" {row['hand_ac1']:10.3f} {row['hand_ac3']:5.3f}"
        )
    fit_all = report["fit_all"]
    typer.echo(f"\nfitted on all {len(ranking_cases)} cases (l2 {fit_all['l2']}); scored on the same cases:")
    for row in fit_all["scores"]:
        typer.echo(
            f"  {row['group']:28s} {row['n']:4d} learned {row['learned_ac1']:.3f} / {row['learned_ac3']:.3f}"
            f"   hand {row['hand_ac1']:.3f} / {row['hand_ac3']:.3f}"
        )
    typer.echo("weights (raw features):")
    for name, w in fit_all["weights"].items():
        typer.echo(f"  {name:24s} {w: .6f}")
    if json_out is not None:
        json_out.write_text(json.dumps(report, indent=1, sort_keys=True), encoding="utf-8")
