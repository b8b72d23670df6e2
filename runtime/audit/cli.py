"""`homeostat audit ...` commands: verify, replay, show and export the hash-chained audit log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Verify, replay, show and export the hash-chained audit log.", no_args_is_help=True)

DbOption = Annotated[
    str, typer.Option("--db", help="Audit database: a SQLite file path, sqlite:///PATH or postgresql://URL.")
]
KeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--hmac-key-file",
        help="File holding the operator's HMAC key "
        "(default: $HOMEOSTAT_AUDIT_HMAC_KEY or $HOMEOSTAT_AUDIT_HMAC_KEY_FILE).",
        dir_okay=False,
    ),
]


def _open(db: str, key_file: Path | None, console: Console):  # type: ignore[no-untyped-def]
    """Open an existing log read-only, or exit 2 with the reason."""
    from runtime.audit import AuditError, AuditLog, load_hmac_key_from_env

    try:
        key = _read_key_file(key_file) if key_file is not None else load_hmac_key_from_env()
        return AuditLog(db, hmac_key=key, create=False)
    except AuditError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from exc


def _read_key_file(path: Path) -> bytes:
    from runtime.audit import AuditError

    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise AuditError(f"--hmac-key-file {path}: cannot read it ({exc.strerror})") from exc
    if not key:
        raise AuditError(f"--hmac-key-file {path}: the file is empty")
    return key


@app.command()
def verify(
    db: DbOption,
    head: Annotated[
        str | None, typer.Option("--head", help="A head hash you kept earlier: the chain must still reach it.")
    ] = None,
    hmac_key_file: KeyFileOption = None,
) -> None:
    """Recompute every hash and link; exit 1 naming the first broken record and how it was broken."""
    from runtime.audit import AuditError

    console = Console(highlight=False, soft_wrap=True)
    log = _open(db, hmac_key_file, console)
    try:
        report = log.verify(head_hash=head)
    except AuditError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    finally:
        log.close()
    if report.ok:
        console.print(f"[bold green]OK[/] {report.message} ({report.algorithm})")
        if report.head_hash:
            console.print(f"head: seq {report.head_seq} hash {report.head_hash}")
            console.print("[dim]keep this head hash; `--head` with it later proves nothing was cut off the end[/]")
        return
    console.print(f"[bold red]TAMPERED[/] record {report.first_bad_seq}: {report.problem}")
    console.print(report.message)
    console.print(f"[dim]{report.checked} records verified before it ({report.algorithm})[/]")
    raise typer.Exit(1)


@app.command()
def replay(
    db: DbOption,
    hmac_key_file: KeyFileOption = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Also exit 1 when a decision recorded by another policy engine version (or an unstamped one)"
            " no longer reproduces.",
        ),
    ] = False,
) -> None:
    """Re-derive every decision from its recorded inputs and constitution; exit 1 listing any divergence.

    A decision stamped by this policy engine that does not reproduce is a divergence (tampering or
    a bug). One stamped by another engine version, or by none, is an engine change: listed with
    the fields that differ, and a failure only with --strict."""
    from runtime.audit.replay import replay as run_replay

    console = Console(highlight=False, soft_wrap=True)
    log = _open(db, hmac_key_file, console)
    try:
        report = run_replay(log)
    finally:
        log.close()

    def fields(recorded: dict[str, object] | None, replayed: dict[str, object] | None, names: list[str]) -> None:
        for name in names:
            was = recorded.get(name) if recorded else None
            now = replayed.get(name) if replayed else None
            console.print(f"    {name}: recorded {was!r}, replayed {now!r}", markup=False)

    for d in report.divergences:
        where = f"record {d.seq}" + (f" (incident {d.incident_id})" if d.incident_id else "")
        console.print(f"[bold red]DIVERGES[/] {where}: {d.reason}")
        fields(d.recorded, d.replayed, d.differing_fields())
    for c in report.engine_changes:
        where = f"record {c.seq}" + (f" (incident {c.incident_id})" if c.incident_id else "")
        label = "[bold red]ENGINE CHANGED[/]" if strict else "[bold yellow]ENGINE CHANGED[/]"
        console.print(f"{label} {where}: {c.reason}")
        fields(c.recorded, c.replayed, c.differing_fields())
    versions = ", ".join(f"{v}: {n}" for v, n in sorted(report.recorded_versions.items()))
    summary = (
        f"{report.reproduced}/{report.decisions} decisions reproduced under "
        f"{report.constitutions} recorded constitution(s) by policy engine {report.engine_version}"
        + (f" (recorded by engine versions {versions})" if versions else "")
    )
    changed = f"{len(report.engine_changes)} engine change(s)"
    if not report.ok:
        console.print(f"[bold red]{len(report.divergences)} divergence(s)[/], {changed}; {summary}")
        raise typer.Exit(1)
    if report.engine_changes:
        if strict:
            console.print(f"[bold red]{changed}[/] (--strict); {summary}")
            raise typer.Exit(1)
        console.print(
            f"[bold green]OK[/] no divergence, [yellow]{changed}[/] (not a failure without --strict); {summary}"
        )
        return
    console.print(f"[bold green]OK[/] {summary}")


@app.command()
def show(
    incident: Annotated[str, typer.Argument(help="The incident id.")],
    db: DbOption,
    hmac_key_file: KeyFileOption = None,
) -> None:
    """Print one incident's timeline: what was seen, diagnosed, proposed, decided, approved, done and verified."""
    from runtime.audit.show import render_timeline

    console = Console(highlight=False)
    log = _open(db, hmac_key_file, console)
    try:
        count = render_timeline(incident, log.records(incident_id=incident), console)
    finally:
        log.close()
    if count == 0:
        console.print(f"[bold red]error:[/] no audit records for incident {incident!r} in {db}")
        raise typer.Exit(1)


@app.command()
def export(
    db: DbOption,
    fmt: Annotated[str, typer.Option("--format", help="jsonl or csv.")] = "jsonl",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write here instead of standard output.", dir_okay=False)
    ] = None,
    incident: Annotated[str | None, typer.Option("--incident", help="Only this incident's records.")] = None,
    hmac_key_file: KeyFileOption = None,
) -> None:
    """Stream the log as JSON lines or CSV (for SIEM ingestion), record by record."""
    import sys

    from runtime.audit.export import export as run_export

    err = Console(stderr=True, highlight=False)
    if fmt not in ("jsonl", "csv"):
        err.print(f"[bold red]error:[/] --format must be jsonl or csv, got {fmt!r}")
        raise typer.Exit(2)
    log = _open(db, hmac_key_file, err)
    try:
        if out is None:
            count = run_export(log, fmt, sys.stdout, incident_id=incident)  # type: ignore[arg-type]
        else:
            with out.open("w", encoding="utf-8", newline="") as fh:
                count = run_export(log, fmt, fh, incident_id=incident)  # type: ignore[arg-type]
    finally:
        log.close()
    err.print(f"exported {count} records as {fmt}" + (f" to {out}" if out else ""))
