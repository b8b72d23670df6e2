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

    console = Console(highlight=False)
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
