"""`homeostat constitution ...` commands: validate, schema, explain and backtest constitution.yaml.

Operators run these before shipping a constitution change: validate lists every mistake with
its line, explain shows rule by rule why a proposal gets its verdict, and backtest replays the
audit log's decisions under the candidate file.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Validate, explain, backtest and export the schema of constitution.yaml.", no_args_is_help=True)

PathArg = Annotated[Path, typer.Argument(help="The constitution file.", dir_okay=False)]


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _load_or_exit(path: Path, console: Console):  # type: ignore[no-untyped-def]
    from policies import ConstitutionError, load_constitution

    try:
        return load_constitution(path)
    except ConstitutionError as exc:
        n = len(exc.errors)
        console.print(f"[bold red]{n} error{'s' if n != 1 else ''} in {path}[/]", markup=True)
        for issue in exc.errors:
            console.print(str(issue), markup=False)
        raise typer.Exit(1) from exc


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="The constitution file.", dir_okay=False)] = Path("constitution.yaml"),
) -> None:
    """Check a constitution file; exit 0 if valid, 1 listing every error as FILE:LINE: key: message."""
    console = _console()
    constitution = _load_or_exit(path, console)
    console.print(
        f"[green]ok[/] {path}: {len(constitution.rules)} rules, default {constitution.default.verdict.value},"
        f" kill switch {constitution.kill_switch.value}, digest {constitution.digest[:16]}"
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of constitution.yaml (point your editor's YAML plugin at it)."""
    from policies import ConstitutionFile

    document = ConstitutionFile.model_json_schema(by_alias=True)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "Homeostat constitution"
    typer.echo(json.dumps(document, indent=2, sort_keys=True))


def _parse_at(at: str | None) -> datetime:
    if at is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(f"expected an ISO 8601 time like 2026-03-04T12:00:00Z, got {at!r}") from exc
    if value.tzinfo is None:
        raise typer.BadParameter(f"give a time zone (e.g. a trailing Z) in {at!r}")
    return value.astimezone(UTC)


def _proposal_from_options(
    proposal_file: Path | None,
    fields: dict[str, Any],
) -> Any:
    from pydantic import ValidationError

    from domain import Proposal

    data: dict[str, Any] = {}
    if proposal_file is not None:
        try:
            data = json.loads(proposal_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise typer.BadParameter(f"cannot read proposal JSON {proposal_file}: {exc}") from exc
        if isinstance(data, dict) and isinstance(data.get("proposal"), dict):
            data = data["proposal"]  # accept an audit decision payload as well
    data = {**data, **{k: v for k, v in fields.items() if v is not None}}
    if "target" not in data and "service" in data:
        data["target"] = data["service"]
    data.setdefault("blast_radius", 0.0)
    data.setdefault("reversible", True)
    try:
        return Proposal.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise typer.BadParameter("invalid proposal:\n  " + "\n  ".join(lines)) from exc


@app.command()
def explain(  # noqa: PLR0917 - typer maps each option to a parameter
    path: PathArg,
    proposal_file: Annotated[
        Path | None, typer.Option("--proposal", help="Proposal JSON (or an audit decision payload).", dir_okay=False)
    ] = None,
    action: Annotated[str | None, typer.Option(help="Catalog action, e.g. rollback_prompt_version.")] = None,
    service: Annotated[str | None, typer.Option(help="Service the action runs for.")] = None,
    target: Annotated[str | None, typer.Option(help="Target (default: the service).")] = None,
    cause: Annotated[str | None, typer.Option(help="Diagnosed cause, e.g. bad_prompt_deploy.")] = None,
    confidence: Annotated[float | None, typer.Option(help="Diagnosis confidence, 0..1.")] = None,
    blast_radius: Annotated[float | None, typer.Option(help="Share of fleet traffic touched, 0..1.")] = None,
    reversible: Annotated[bool | None, typer.Option("--reversible/--irreversible", help="Can it be undone?")] = None,
    at: Annotated[str | None, typer.Option(help="Decide as of this ISO time (default: now).")] = None,
    kill_switch: Annotated[str | None, typer.Option(help="Override: off, auto_to_approval or deny_all.")] = None,
) -> None:
    """Show the decision for one proposal and why: every rule, whether it matched, and each condition."""
    from policies import DecisionContext, KillSwitch
    from policies import explain as explain_decision

    console = _console()
    constitution = _load_or_exit(path, console)
    proposal = _proposal_from_options(
        proposal_file,
        {
            "action": action,
            "service": service,
            "target": target,
            "cause": cause,
            "confidence": confidence,
            "blast_radius": blast_radius,
            "reversible": reversible,
        },
    )
    switch = None
    if kill_switch is not None:
        try:
            switch = KillSwitch(kill_switch)
        except ValueError as exc:
            raise typer.BadParameter(
                f"--kill-switch must be one of off, auto_to_approval, deny_all; got {kill_switch!r}"
            ) from exc
    context = DecisionContext(now=_parse_at(at), kill_switch=switch)
    result = explain_decision(proposal, context, constitution)
    decision = result.decision

    console.print(
        f"proposal: {proposal.action.value} on {proposal.target} for {proposal.service}"
        f" (cause {proposal.cause.value}, confidence {proposal.confidence:g},"
        f" blast radius {proposal.blast_radius:g}, {'reversible' if proposal.reversible else 'irreversible'})",
        markup=False,
    )
    console.print(f"rules in {path} (digest {constitution.digest[:16]}), in file order:", markup=False)
    for check in result.checks:
        state = "[green]matched[/]" if check.matched else "[dim]no match[/]"
        console.print(f"  {check.rule_id} ({check.verdict.value}): {state}")
        for ok, text in check.conditions:
            console.print(f"      {'✓' if ok else '✗'} {text}", markup=False)
    if result.kill_switch.value != "off":
        console.print(f"kill switch: {result.kill_switch.value}", markup=False)
    colour = {"auto": "green", "approval": "yellow", "deny": "red"}[decision.verdict.value]
    line = f"decision: [bold {colour}]{decision.verdict.value}[/]"
    if decision.approval is not None:
        a = decision.approval
        line += (
            f" — {a.approvers} approver(s) with role {' or '.join(a.roles)}, within {a.timeout_s:g}s,"
            f" then {a.on_timeout.value}"
        )
    console.print(line)
    for reason in decision.reasons:
        console.print(f"  because {reason}", markup=False)


@app.command()
def backtest(
    path: PathArg,
    db: Annotated[str, typer.Option("--db", help="Audit database: SQLite path, sqlite:///PATH or postgresql://URL.")],
    show_all: Annotated[bool, typer.Option("--all", help="Also list decisions that do not change.")] = False,
) -> None:
    """Re-decide every proposal recorded in the audit log under PATH; list each decision that would change."""
    from policies.backtest import RecordedDecision
    from policies.backtest import backtest as run_backtest

    console = _console()
    candidate = _load_or_exit(path, console)
    try:
        from runtime.audit import AuditError, AuditLog
    except ImportError as exc:  # pragma: no cover - the audit package ships with runtime
        console.print(f"[bold red]error:[/] the audit log package is unavailable: {exc}")
        raise typer.Exit(2) from exc
    try:
        log = AuditLog(db, create=False)
    except AuditError as exc:
        console.print(f"[bold red]error:[/] {exc}", markup=False)
        raise typer.Exit(2) from exc
    records: list[RecordedDecision] = []
    unreadable: list[str] = []
    try:
        for rec in log.records(kind="decision"):
            try:
                records.append(RecordedDecision.from_payload(rec.payload, f"seq {rec.seq}", rec.incident_id))
            except ValueError as exc:
                unreadable.append(str(exc))
    finally:
        log.close()
    report = run_backtest(records, candidate)

    console.print(
        f"backtest of {path} (digest {candidate.digest[:16]}) against {report.total} recorded decisions in {db}",
        markup=False,
    )
    for change in report.changes:
        incident = f" incident {change.record.incident_id}" if change.record.incident_id else ""
        console.print(f"  CHANGED{incident} {change.describe()}", markup=False)
    if show_all:
        changed = {c.record.ref for c in report.changes}
        for recorded in records:
            if recorded.ref not in changed:
                console.print(f"  same    {recorded.ref}: {recorded.decision.verdict.value}", markup=False)
    table = Table(title="decisions matched per rule")
    table.add_column("rule")
    table.add_column("recorded", justify="right")
    table.add_column("candidate", justify="right")
    for rule_id, before, after in report.rule_rows():
        table.add_row(rule_id, str(before), str(after))
    console.print(table)
    verdicts = ", ".join(
        f"{v}: {report.verdicts_before.get(v, 0)} -> {report.verdicts_after.get(v, 0)}"
        for v in ("auto", "approval", "deny")
    )
    console.print(f"verdicts {verdicts}")
    console.print(f"{len(report.changes)} of {report.total} decisions would change")
    for problem in unreadable:
        console.print(f"[yellow]skipped unreadable record:[/] {problem}")
