"""`homeostat bench audit`: append, verify and replay rates of the audit log on SQLite and PostgreSQL.

The log benchmarked looks like production: incidents of ten records each (opened, observation,
diagnosis, proposal, decision with its real `policies.decide()` result, action intent and
result, verification, state change, close) under one recorded constitution. Appends go one
record per transaction, as the incident graph writes them.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

PG_ENV = "HOMEOSTAT_TEST_PG_URL"

_CONSTITUTION = """\
version: 1
default:
  verdict: approval
rules:
  - id: rollback-after-bad-deploy
    when:
      action: [rollback_prompt_version, rollback_model_version]
      cause: [bad_prompt_deploy, bad_model_deploy]
      confidence: {min: 0.8}
      reversible: true
    verdict: auto
  - id: failover-needs-one-approver
    when:
      action: failover_provider
    verdict: approval
  - id: never-touch-payments
    when:
      service: "payments-*"
    verdict: deny
"""


def _incident_records(i: int, constitution: Any) -> Iterator[tuple[str, dict[str, Any], datetime]]:
    """The ten records of one synthetic incident (payloads shaped as the incident graph writes them)."""
    from domain import (
        ActionName,
        ActionOutcome,
        Anomaly,
        Cause,
        ChangeEvidence,
        ChangeKind,
        Diagnosis,
        Direction,
        OutcomeStatus,
        Proposal,
        SeriesEvidence,
    )
    from policies import DecisionContext, decide

    t0 = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=10 * i)
    service = ("chat", "search", "payments-eu")[i % 3]
    anomaly = Anomaly(
        id=f"an-{i}",
        service=service,
        signal="quality_score",
        detector="page_hinkley",
        ts=t0,
        direction=Direction.DOWN,
        baseline=0.91,
        current=0.62,
    )
    diagnosis = Diagnosis(
        cause=Cause.BAD_PROMPT_DEPLOY,
        service=service,
        confidence=0.9,
        evidence=(
            SeriesEvidence(service=service, signal="quality_score", before=0.91, after=0.62, window_s=300),
            ChangeEvidence(
                change_id=f"ch-{i}",
                service=service,
                kind=ChangeKind.PROMPT_VERSION,
                from_value="v6",
                to_value="v7",
                seconds_before_onset=40,
            ),
        ),
        rationale="quality fell 40 s after prompt v7 shipped",
        diagnoser="deterministic",
        diagnoser_version="1.0",
    )
    proposal = Proposal(
        action=ActionName.ROLLBACK_PROMPT_VERSION,
        target=service,
        service=service,
        parameters={"to_version": "v6"},
        blast_radius=0.3,
        reversible=True,
        cause=Cause.BAD_PROMPT_DEPLOY,
        confidence=0.9,
    )
    context = DecisionContext(now=t0 + timedelta(seconds=30))
    decision = decide(proposal, context, constitution)
    key = f"inc-{i}:rollback_prompt_version:{service}"
    outcome = ActionOutcome(status=OutcomeStatus.SUCCEEDED, idempotency_key=key, detail="rolled back to v6")
    anomaly_json = anomaly.model_dump(mode="json")
    yield "incident_opened", {"services": [service], "anomalies": [anomaly_json]}, t0
    yield "observation", {"anomaly": anomaly_json}, t0 + timedelta(seconds=5)
    yield (
        "diagnosis",
        {
            "diagnosis": diagnosis.model_dump(mode="json"),
            "services": {service: {"model_version": "m3", "prompt_version": "v7", "provider": "acme"}},
        },
        t0 + timedelta(seconds=10),
    )
    yield "proposal", {"proposal": proposal.model_dump(mode="json")}, t0 + timedelta(seconds=20)
    yield (
        "decision",
        {
            "proposal": proposal.model_dump(mode="json"),
            "context": context.model_dump(mode="json"),
            "decision": decision.model_dump(mode="json"),
            "constitution_digest": constitution.digest,
        },
        t0 + timedelta(seconds=30),
    )
    yield (
        "action_intent",
        {
            "idempotency_key": key,
            "action": proposal.action.value,
            "target": service,
            "parameters": {},
            "dry_run": False,
        },
        t0 + timedelta(seconds=31),
    )
    yield (
        "action_result",
        {"idempotency_key": key, "outcome": outcome.model_dump(mode="json")},
        t0 + timedelta(seconds=32),
    )
    yield (
        "verification",
        {"recovered": True, "signals": {"quality_score": 0.9}, "detail": "ok"},
        t0 + timedelta(minutes=5),
    )
    yield "incident_state", {"from": "verifying", "to": "resolved", "reason": "recovered"}, t0 + timedelta(minutes=5)
    yield "incident_closed", {"state": "resolved", "summary": "prompt rolled back"}, t0 + timedelta(minutes=5)


def measure(url: str, records: int) -> dict[str, float]:
    """Append `records` records to a fresh log at `url`, then time verify and replay over it."""
    from policies import parse_constitution
    from runtime.audit import AuditError, AuditLog
    from runtime.audit.replay import replay

    constitution = parse_constitution(_CONSTITUTION, "bench-constitution.yaml")
    incidents = max(1, records // 10)
    prepared = [r for i in range(incidents) for r in _incident_records(i, constitution)]
    with AuditLog(url, hmac_key=None) as log:
        log.append(
            "constitution_loaded",
            {"digest": constitution.digest, "source": constitution.source, "text": constitution.text},
            incident_id=None,
            ts=datetime(2026, 1, 1, tzinfo=UTC),
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        for n, (kind, payload, ts) in enumerate(prepared):
            log.append(kind, payload, incident_id=f"inc-{n // 10}", ts=ts)
        append_s = time.perf_counter() - started
        append_cpu_s = time.process_time() - cpu_started

        started, cpu_started = time.perf_counter(), time.process_time()
        report = log.verify()
        verify_s = time.perf_counter() - started
        verify_cpu_s = time.process_time() - cpu_started
        if not report.ok:
            raise AuditError(f"benchmark log failed to verify: {report.message}")

        started = time.perf_counter()
        rep = replay(log)
        replay_s = time.perf_counter() - started
        if not rep.ok:
            raise AuditError(f"benchmark log failed to replay: {rep.divergences[0].reason}")
    return {
        "records": float(len(prepared) + 1),
        "decisions": float(rep.decisions),
        "append_per_s": round(len(prepared) / append_s, 1),
        "verify_per_s": round(report.checked / verify_s, 1),
        "replay_per_s": round(rep.decisions / replay_s, 1),
        # What this process alone spent (excludes waiting for the CPU, the disk or the server):
        # on a busy machine the wall-clock rates above fall well below these.
        "append_cpu_per_s": round(len(prepared) / max(append_cpu_s, 1e-9), 1),
        "verify_cpu_per_s": round(report.checked / max(verify_cpu_s, 1e-9), 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": float(os.cpu_count() or 1),
    }


@contextmanager
def _pg_schema(base_url: str) -> Iterator[str]:
    """A throw-away schema on the PostgreSQL server, so the benchmark never touches real tables."""
    import psycopg

    schema = f"audit_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base_url else "?"
    try:
        yield f"{base_url}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


def run(records: int, pg_url: str | None, echo: Callable[[str], None]) -> dict[str, Any]:
    """Measure SQLite (in a temporary directory) and, when a URL is given, PostgreSQL."""
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="homeostat-audit-bench-") as tmp:
        echo(f"sqlite: {records} records ...")
        results["sqlite"] = measure(str(Path(tmp) / "audit.db"), records)
    if pg_url:
        echo(f"postgres: {records} records ...")
        with _pg_schema(pg_url) as url:
            results["postgres"] = measure(url, records)
    else:
        results["postgres"] = None
    return results


def register(app: typer.Typer) -> None:
    """Add the audit benchmark command to `homeostat bench`."""

    @app.command("audit")
    def audit(
        json_out: Annotated[Path | None, typer.Option("--json", help="Also write the figures here as JSON.")] = None,
        records: Annotated[int, typer.Option("--records", min=10, help="Records to append per database.")] = 20_000,
        pg_url: Annotated[
            str | None, typer.Option("--pg-url", help=f"PostgreSQL URL (default: ${PG_ENV}); omit to skip.")
        ] = None,
    ) -> None:
        """Append, verify and replay rates (records/s) of the audit log on SQLite and PostgreSQL."""
        from rich.console import Console
        from rich.table import Table

        console = Console(stderr=True, highlight=False)
        url = pg_url or os.environ.get(PG_ENV)
        results = run(records, url, lambda m: console.print(f"[dim]{m}[/]"))
        table = Table(title=f"audit log, {records} records, one transaction per append")
        for col in ("database", "append/s", "verify/s", "replay decisions/s", "append/CPU-s", "verify/CPU-s"):
            table.add_column(col, justify="right" if col != "database" else "left")
        for name, r in results.items():
            if r is None:
                table.add_row(name, "skipped: no --pg-url / $" + PG_ENV, "", "", "", "")
            else:
                table.add_row(
                    name,
                    *(f"{r[k]:,.0f}" for k in ("append_per_s", "verify_per_s", "replay_per_s")),
                    *(f"{r[k]:,.0f}" for k in ("append_cpu_per_s", "verify_cpu_per_s")),
                )
        Console(highlight=False).print(table)
        load = os.getloadavg()[0]
        console.print(f"[dim]load average {load:.1f} on {os.cpu_count()} CPUs while measuring[/]")
        if json_out is not None:
            json_out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            console.print(f"wrote {json_out}")
