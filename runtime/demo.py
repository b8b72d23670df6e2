"""`homeostat demo`: play scenarios on the built-in simulated fleet and print each incident's story."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

DEFAULT_SCENARIOS = ("bad_prompt_deploy", "provider_outage", "benign_deploy")


def demo(
    db: Annotated[
        Path | None, typer.Option(help="SQLite file to keep (audit log, incidents, checkpoints); a temp file if unset.")
    ] = None,
    scenario: Annotated[
        list[str] | None, typer.Option("--scenario", "-s", help="Scenario name or YAML path; repeatable.")
    ] = None,
    log_level: Annotated[str, typer.Option(help="JSON log level on stderr.")] = "WARNING",
) -> None:
    """Play scenarios in virtual time through the real loop and print a timeline per incident."""
    import tempfile

    from runtime.gameday import play_scenario
    from runtime.logs import configure_logging
    from runtime.loop import LoopOptions
    from runtime.supervisor import SupervisorSettings
    from runtime.timeline import entries, render

    configure_logging(log_level)
    console = Console()
    db_path = db or Path(tempfile.mkdtemp(prefix="homeostat-demo-")) / "homeostat.sqlite"
    if db_path.exists():
        raise typer.BadParameter(f"{db_path} already exists; the demo writes a fresh database", param_hint="--db")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    summary: list[tuple[str, str, str, str, bool]] = []
    started = time.perf_counter()
    for name in scenario or DEFAULT_SCENARIOS:
        spec = _resolve(name)
        console.rule(f"[bold]{spec.name}[/bold]: {spec.description}")
        options = LoopOptions(db=str(db_path), supervisor=replace(SupervisorSettings(), id_prefix=spec.name))
        result = play_scenario(spec, db=str(db_path), options=options)
        from runtime.audit import AuditLog

        audit = AuditLog(str(db_path))
        try:
            mine = [i for i in result.incidents if i.id.startswith(spec.name + "-")]
            if not mine:
                console.print("  no incident opened; no action taken.\n")
            for incident in sorted(mine, key=lambda i: i.opened_at):
                render(console, f"incident {incident.id}", entries(audit.records(incident_id=incident.id)))
        finally:
            audit.close()
        truth = spec.ground_truth
        expected = "no incident" if not truth.incident_expected else f"{truth.cause.value if truth.cause else '?'}"
        acts = ", ".join(f"{a['action']}({a['target']})" for a in result.actions) or "none"
        outcomes = ", ".join(sorted({i.state for i in mine})) or "none"
        ok = _matches(truth, mine, result.actions)
        summary.append((spec.name, expected, acts, outcomes, ok))
    table = Table(title="demo summary")
    for column in ("scenario", "ground truth", "actions taken", "incident outcome", "as expected"):
        table.add_column(column)
    for name, expected, acts, outcomes, ok in summary:
        table.add_row(name, expected, acts, outcomes, "[green]yes[/green]" if ok else "[red]NO[/red]")
    console.print(table)
    console.print(
        f"played {len(summary)} scenarios in {time.perf_counter() - started:.1f}s wall time; "
        f"audit log: {db_path}\nverify it with: homeostat audit verify --db {db_path}"
    )
    if not all(row[-1] for row in summary):
        raise typer.Exit(1)


def _resolve(name: str):  # type: ignore[no-untyped-def]
    from simulations import builtin_scenarios, load_scenario

    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return load_scenario(path)
    for candidate in builtin_scenarios():
        if candidate.stem == name:
            return load_scenario(candidate)
    known = ", ".join(p.stem for p in builtin_scenarios())
    raise typer.BadParameter(f"no scenario {name!r}; known: {known}", param_hint="--scenario")


def _matches(truth, incidents, actions) -> bool:  # type: ignore[no-untyped-def]
    if not truth.incident_expected:
        return not incidents and not actions
    taken = {a["action"] for a in actions}
    acceptable = {a.value if hasattr(a, "value") else str(a) for a in truth.acceptable_actions}
    return bool(incidents) and bool(taken & acceptable) and all(i.state == "resolved" for i in incidents)
