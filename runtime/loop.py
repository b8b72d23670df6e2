"""The control loop assembled: sources' batches -> detection -> supervisor -> incident graph.

`ControlLoop` owns the long-lived parts (audit journal, telemetry window, detectors,
checkpointer, guard) and exposes the three things a driver does: `ingest` a batch, `tick`
the clock-driven work, `recover` after a restart. The demo and game days drive it in virtual
time; the daemon drives it from APScheduler jobs.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver

from agents.diagnosis import DeterministicDiagnoser
from agents.graph import GraphDeps, build_incident_graph
from agents.ports import Diagnoser
from domain import ActionOutcome, Anomaly
from domain.clock import Clock
from policies import Constitution, load_constitution
from runtime.audit import AuditLog
from runtime.detection import DetectionConfig, DetectionEngine
from runtime.journal import Journal
from runtime.ports import TelemetryBatch
from runtime.store import IncidentRow, IncidentStore, engine_for
from runtime.supervisor import Supervisor, SupervisorSettings
from runtime.telemetry import TelemetryStore
from tools import ActionRequest, Adapter, Guard, GuardConfig

log = structlog.get_logger("homeostat.loop")

DEFAULT_CONSTITUTION = Path(__file__).resolve().parent.parent / "constitution.yaml"


@dataclass
class LoopOptions:
    db: str
    """SQLite path or database URL holding the audit log, incident store and graph checkpoints."""
    constitution_path: Path = DEFAULT_CONSTITUTION
    detection: DetectionConfig | None = None
    guard: GuardConfig | None = None
    supervisor: SupervisorSettings = field(default_factory=SupervisorSettings)
    diagnoser: Diagnoser | None = None
    fence: Callable[[], None] | None = None
    """Called before every action; raises (e.g. `runtime.leader.LeadershipLost`) when this
    replica must not act. The exception aborts the graph step before the intent is written, so
    the thread resumes at `execute` on whichever replica leads next."""


class FencedExecutor:
    """The guard behind a fence: no action starts unless the fence lets it."""

    def __init__(self, guard: Guard, fence: Callable[[], None]) -> None:
        self._guard = guard
        self._fence = fence

    def execute(self, request: ActionRequest) -> ActionOutcome:
        self._fence()
        return self._guard.execute(request)


class ControlLoop:
    def __init__(self, options: LoopOptions, *, clock: Clock, adapter: Adapter, on_change: Any = None) -> None:
        self.clock = clock
        self.options = options
        self.audit = AuditLog(options.db)
        self.journal = Journal(self.audit, clock)
        self.constitution = load_constitution(options.constitution_path)
        self._record_constitution(self.constitution)
        self.telemetry = TelemetryStore()
        self.detection = DetectionEngine(options.detection)
        self._adapter = adapter
        self._on_change = on_change
        self._checkpoint_conn, self.checkpointer = _checkpointer_for(options.db)
        self.store = IncidentStore(engine_for(options.db))
        self._assemble()

    def _assemble(self) -> None:
        """Build the guard, graph and supervisor over `self.journal`."""
        options = self.options
        self.guard = Guard(self._adapter, self.journal, options.guard or GuardConfig())
        executor: Any = self.guard if options.fence is None else FencedExecutor(self.guard, options.fence)
        deps = GraphDeps(
            clock=self.clock,
            telemetry=self.telemetry,
            diagnoser=options.diagnoser or DeterministicDiagnoser(),
            constitution=lambda: self.constitution,
            recent_actions=self.journal.recent_actions,
            executor=executor,
            audit=self.journal,
        )
        self.graph = build_incident_graph(deps, self.checkpointer)
        self.supervisor = Supervisor(
            graph=self.graph,
            store=self.store,
            journal=self.journal,
            clock=self.clock,
            settings=options.supervisor,
            on_change=self._on_change,
        )

    def refresh(self) -> None:
        """Re-read what other replicas wrote: the journal's index of decisions, intents and results.

        A replica that becomes leader calls this before `recover()`, so the guard sees every
        intent the previous leader wrote and settles it by key instead of repeating it.
        """
        self.journal = Journal(self.audit, self.clock)
        self._assemble()

    def _record_constitution(self, constitution: Constitution) -> None:
        """Write the constitution's full text to the audit log once per digest, so replay can re-parse it."""
        for record in self.audit.records(kind="constitution_loaded"):
            if record.payload.get("digest") == constitution.digest:
                return
        payload = {"digest": constitution.digest, "source": constitution.source, "text": constitution.text}
        self.journal.append("constitution_loaded", payload, incident_id=None, ts=self.clock.now())

    def replace_constitution(self, new: Constitution) -> None:
        """Swap in a validated constitution (hot reload); the change is audited with both digests."""
        old = self.constitution
        self._record_constitution(new)
        self.journal.append(
            "constitution_changed",
            {"old_digest": old.digest, "new_digest": new.digest, "source": new.source},
            incident_id=None,
            ts=self.clock.now(),
        )
        self.constitution = new

    def ingest(self, batch: TelemetryBatch) -> list[Anomaly]:
        """Feed one poll's worth of telemetry through detection into the supervisor."""
        self.telemetry.add_changes(batch.changes)
        self.telemetry.add_samples(batch.samples)
        anomalies = self.detection.observe_batch(batch.samples) + list(batch.anomalies)
        if anomalies:
            self.supervisor.on_anomalies(anomalies)
        return anomalies

    def tick(self) -> None:
        stale = self.detection.check_staleness(self.clock.now())
        if stale:
            self.supervisor.on_anomalies(stale)
        self.supervisor.tick()

    def recover(self) -> None:
        """After a restart: settle action intents left without a result, then continue threads."""
        for request, outcome in self.guard.reconcile():
            log.warning("action.reconciled", key=request.idempotency_key, status=outcome.status.value)
        self.supervisor.recover()

    def incidents(self) -> list[IncidentRow]:
        return self.store.list(limit=10_000)

    def close(self) -> None:
        self._checkpoint_conn.close()
        self.audit.close()


def _checkpointer_for(db: str) -> tuple[Any, BaseCheckpointSaver[Any]]:
    """LangGraph's SQLite checkpointer on the same file as the store (PostgreSQL: its own saver)."""
    if db.startswith(("postgresql://", "postgres://")):
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row

        pg = Connection.connect(db, autocommit=True, prepare_threshold=0, row_factory=dict_row)
        saver = PostgresSaver(pg)
        saver.setup()
        return pg, saver
    path = db.removeprefix("sqlite:///") if db.startswith("sqlite:///") else db
    lite = sqlite3.connect(path, check_same_thread=False, timeout=30)
    lite.execute("PRAGMA journal_mode=WAL")
    return lite, SqliteSaver(lite)
