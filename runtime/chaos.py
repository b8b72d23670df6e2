"""Chaos harness: SIGKILL a process running the control loop at random points, restart it, check invariants.

The simulated fleet runs over HTTP on loopback in its own process (it is the world; it
survives every crash). A worker process, forked after imports so a restart costs a fraction
of a second, opens the SQLite file, recovers, and steps the loop: advance the fleet, poll
its telemetry since the last checkpoint, detect, tick the supervisor, answer approvals as a
scripted SRE, checkpoint. The parent kills it (SIGKILL) at a seeded random moment, then
checks after every kill:

- no action executed twice: the fleet's applied list has each idempotency key once, and at
  most one applied action per (incident, action, target) beyond the attempts the audit log
  records intents for;
- no approval lost: every approval the worker reported as accepted is delivered (the
  incident moved past it) or still queued;
- the audit chain verifies.

At the end a worker runs uninterrupted until every incident reaches a final state.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from langgraph.checkpoint.sqlite import SqliteSaver

from domain import FINAL_STATES, ActionName, ChangeEvent, IncidentState, Sample, Topology
from domain.clock import VirtualClock
from runtime.audit import AuditLog
from runtime.logs import configure_logging
from runtime.loop import ControlLoop, LoopOptions
from runtime.ports import Identity, TelemetryBatch
from runtime.store import IncidentStore, StateBlobStore, engine_for
from simulations import load_scenario
from tools import GuardConfig, SimulatorHttpAdapter

CHECKPOINT_BLOB = "chaos-checkpoint"
APPROVER = Identity("chaos.sre@oncall", ("approver",))
APPROVAL_DELAY_S = 120.0  # virtual seconds an approval waits before the scripted SRE answers


@dataclass
class ChaosReport:
    kills: int = 0
    steps_killed_inside: int = 0
    incidents: dict[str, str] = field(default_factory=dict)
    actions_applied: int = 0
    approvals_given: int = 0
    audit_records: int = 0
    wall_s: float = 0.0
    violations: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kills": self.kills,
            "incidents": self.incidents,
            "actions_applied": self.actions_applied,
            "approvals_given": self.approvals_given,
            "audit_records": self.audit_records,
            "wall_s": round(self.wall_s, 1),
            "violations": self.violations,
        }


# -- the world: the simulated fleet over HTTP ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_fleet(scenario_path: str, port: int) -> None:
    import uvicorn

    from simulations import load_scenario
    from simulations.http import create_app

    scenario = load_scenario(scenario_path)
    fleet = scenario.build_fleet()
    app = create_app(fleet, scenario_name=scenario.name)

    @app.get("/chaos/applied")
    async def applied() -> list[dict[str, Any]]:  # every call the fleet accepted, duplicates included
        return [r.model_dump(mode="json") for r in fleet.applied_actions]

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)


@contextlib.contextmanager
def fleet_server(scenario_path: Path) -> Iterator[str]:
    """The scenario's fleet on a loopback port, in a forked process; yields its base URL."""
    port = free_port()
    proc = mp.get_context("fork").Process(target=_serve_fleet, args=(str(scenario_path), port), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or not proc.is_alive():
                    raise RuntimeError(f"simulated fleet did not start on {url}") from None
                time.sleep(0.05)
        yield url
    finally:
        if proc.pid is not None and proc.is_alive():
            os.kill(proc.pid, signal.SIGTERM)
        proc.join(5)


# -- the worker: one life of the control loop ---------------------------------------------------


@dataclass(frozen=True)
class CrashPoint:
    """A deterministic place to die: around the moment graph step `node` hands its result to the checkpointer.

    `when="after_writes"`: the step ran and its writes were saved, but the checkpoint that applies them
    was not (LangGraph saves a step's writes, then the next checkpoint). `when="before_writes"`: the step
    ran (its audit records and any action are done) but its writes were never saved.
    """

    node: str
    when: str = "after_writes"

    def __post_init__(self) -> None:
        if self.when not in ("after_writes", "before_writes"):
            raise ValueError(f"CrashPoint.when: expected 'after_writes' or 'before_writes', got {self.when!r}")


class _DyingSaver(SqliteSaver):
    """LangGraph's SQLite checkpointer that SIGKILLs its own process at a `CrashPoint` (first occurrence).

    LangGraph saves a step's writes and the checkpoint after the step from a thread pool, in either
    order; for `after_writes` the checkpoint's save waits until the step's writes are on disk, then dies.
    """

    def __init__(self, conn: sqlite3.Connection, point: CrashPoint) -> None:
        super().__init__(conn)
        self._point = point
        self._lock = threading.Lock()
        self._written: dict[str, threading.Event] = {}
        self._seen: dict[str, Any] = {}

    def _event(self, config: Any) -> threading.Event:
        with self._lock:
            return self._written.setdefault(config["configurable"]["thread_id"], threading.Event())

    def put_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        node = task_path.rsplit(", ", 1)[-1]
        hit = node == self._point.node and any(not channel.startswith("__") for channel, _ in writes)
        if hit and self._point.when == "before_writes":
            os.kill(os.getpid(), signal.SIGKILL)
        super().put_writes(config, writes, task_id, task_path)
        if hit:
            self._event(config).set()

    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        thread = config["configurable"]["thread_id"]
        seen = checkpoint["versions_seen"].get(self._point.node)
        ran = seen is not None and seen != self._seen.get(thread)  # the node ran in the step this checkpoint closes
        self._seen[thread] = seen
        if ran and self._point.when == "after_writes" and self._event(config).wait(10):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().put(config, checkpoint, metadata, new_versions)


def _open_loop(
    db: str, sim: str, client: httpx.Client, crash: CrashPoint | None = None
) -> tuple[ControlLoop, VirtualClock, StateBlobStore]:
    now = datetime.fromisoformat(client.get(f"{sim}/healthz").json()["now"])
    clock = VirtualClock(now)
    options = LoopOptions(db=db, guard=GuardConfig(allow={a: ["*"] for a in ActionName}))
    loop = ControlLoop(options, clock=clock, adapter=SimulatorHttpAdapter(sim, timeout_s=10))
    if crash is not None:
        conn = sqlite3.connect(db, check_same_thread=False, timeout=30)
        loop.checkpointer = _DyingSaver(conn, crash)
        loop.refresh()  # rebuild the graph over the dying checkpointer
    loop.telemetry.set_topology(Topology.model_validate(client.get(f"{sim}/topology").json()))
    # The telemetry window is memory: like the daemon's first poll of a source, a new life reads the
    # source's history back into it (for diagnosis and for judging recovery against the pre-onset
    # baseline). Detection is fed only from the checkpointed cursor on, in `step`.
    history = client.get(f"{sim}/telemetry").json()
    loop.telemetry.add_changes(ChangeEvent.model_validate(c) for c in history["changes"])
    loop.telemetry.add_samples(Sample.model_validate(s) for s in history["samples"])
    blobs = StateBlobStore(loop.store.engine)
    checkpoint = blobs.get(CHECKPOINT_BLOB)
    if checkpoint is not None:
        from runtime.detection import DetectionEngine

        loop.detection = DetectionEngine.restore(checkpoint.split(b"\n", 1)[1])
    return loop, clock, blobs


@dataclass(frozen=True)
class WorkerSpec:
    """What one life of the loop needs: its database, the fleet's URL, where to report approvals."""

    db: str
    sim: str
    approvals_file: str
    step_s: float
    crash: CrashPoint | None = None
    """Die (SIGKILL) at this point instead of waiting for the parent's kill."""


def _record_crash(spec: WorkerSpec, error: BaseException) -> None:
    """A life that ends by itself (not by our SIGKILL) leaves its error next to the approvals file."""
    path = Path(spec.approvals_file).with_name("crashes.jsonl")
    with path.open("a") as out:
        out.write(json.dumps({"error": f"{type(error).__name__}: {error}"[:500]}) + "\n")


def run_worker(spec: WorkerSpec, max_steps: int, ready: Any = None) -> None:
    """Recover, then step the loop `max_steps` times (or until killed); a crash is recorded, then re-raised."""
    try:
        _run_worker(spec, max_steps, ready)
    except BaseException as error:
        _record_crash(spec, error)
        raise


def _run_worker(spec: WorkerSpec, max_steps: int, ready: Any = None) -> None:
    configure_logging("WARNING")
    with httpx.Client(timeout=10) as client:
        loop, clock, blobs = _open_loop(spec.db, spec.sim, client, spec.crash)
        loop.recover()
        if ready is not None:
            ready.send(True)
        for _ in range(max_steps):
            step(spec, loop, clock, blobs, client)
        loop.close()


def step(spec: WorkerSpec, loop: ControlLoop, clock: VirtualClock, blobs: StateBlobStore, client: httpx.Client) -> None:
    """One poll interval: advance the fleet, ingest since the checkpoint, tick, answer approvals, checkpoint."""
    sim, approvals_file, step_s = spec.sim, spec.approvals_file, spec.step_s
    checkpoint = blobs.get(CHECKPOINT_BLOB)
    cursor = json.loads(checkpoint.split(b"\n", 1)[0])["cursor"] if checkpoint else None
    now = datetime.fromisoformat(client.post(f"{sim}/advance", json={"seconds": step_s}).json()["now"])
    clock.set(now)
    params = {"since": cursor} if cursor else {}
    body = client.get(f"{sim}/telemetry", params=params).json()
    batch = TelemetryBatch(
        samples=[Sample.model_validate(s) for s in body["samples"]],
        changes=[ChangeEvent.model_validate(c) for c in body["changes"]],
    )
    loop.ingest(batch)
    loop.tick()
    for pending in loop.supervisor.pending_approvals():
        waiting = now - datetime.fromisoformat(pending["updated_at"])
        already = set((pending.get("wait") or {}).get("approvals_so_far", []))
        queued = {a.approver for a in loop.store.undelivered_answers(pending["id"])}
        if waiting < timedelta(seconds=APPROVAL_DELAY_S) or APPROVER.name in already | queued:
            continue
        loop.supervisor.approve(pending["id"], APPROVER, "chaos: approved")
        with open(approvals_file, "a") as out:  # reported only once the API call would have answered
            out.write(json.dumps({"incident": pending["id"], "approver": APPROVER.name}) + "\n")
            out.flush()
            os.fsync(out.fileno())
    stamp = body.get("now") or now.isoformat()
    # One blob, one transaction: the detectors' state and the telemetry cursor it corresponds to.
    blobs.put(CHECKPOINT_BLOB, json.dumps({"cursor": str(stamp)}).encode() + b"\n" + loop.detection.snapshot(), now)


# -- the checks ---------------------------------------------------------------------------------


def check_invariants(db: str, sim: str, approvals_file: Path) -> list[str]:
    """What must hold after any crash; returns the violations (empty when all hold)."""
    problems: list[str] = []
    applied = httpx.get(f"{sim}/chaos/applied", timeout=10).json()
    keys = Counter(a["idempotency_key"] for a in applied)
    problems += [f"action key {k} executed {n} times" for k, n in keys.items() if n > 1]
    with AuditLog(db, create=False) as audit:
        report = audit.verify()
        if not report.ok:
            problems.append(f"audit chain broken: {report.message}")
        intents = [r for r in audit.records(kind="action_intent")]
        approvals_recorded = [r for r in audit.records(kind="approval")]
    intent_keys = {r.payload.get("idempotency_key") or r.payload.get("key") for r in intents}
    for a in applied:
        if a["idempotency_key"] not in intent_keys:
            problems.append(f"action {a['action']}({a['target']}) key {a['idempotency_key']} ran without an intent")
    store = IncidentStore(engine_for(db))
    try:
        lines = approvals_file.read_text().splitlines() if approvals_file.exists() else []
        given = [json.loads(line) for line in lines]
        for g in given:
            queued = {a.approver for a in store.undelivered_answers(g["incident"])}
            delivered = any(
                r.incident_id == g["incident"] and g["approver"] in json.dumps(r.payload) for r in approvals_recorded
            )
            if not (g["approver"] in queued or delivered):
                problems.append(f"approval by {g['approver']} on {g['incident']} lost")
    finally:
        store.engine.dispose()
    return problems


def incident_states(db: str) -> dict[str, str]:
    store = IncidentStore(engine_for(db))
    try:
        return {row.id: row.state for row in store.list(limit=10_000)}
    finally:
        store.engine.dispose()


# -- the driver ---------------------------------------------------------------------------------


def run_chaos(
    scenario_path: Path,
    workdir: Path,
    *,
    kills: int,
    seed: int,
    max_life_s: float = 0.4,
    step_s: float = 30.0,
    final_steps: int = 400,
) -> ChaosReport:
    """Play `scenario_path` with `kills` SIGKILLs of the loop's process; check the invariants after each."""
    rng = random.Random(seed)
    db = str(workdir / "chaos.sqlite")
    approvals_file = workdir / "approvals.jsonl"
    report = ChaosReport()
    started = time.perf_counter()
    ctx = mp.get_context("fork")
    with fleet_server(scenario_path) as sim:
        # First life creates the schema; it is never killed before it is ready.
        for _ in range(kills):
            parent, child = ctx.Pipe(duplex=False)
            spec = WorkerSpec(db, sim, str(approvals_file), step_s)
            proc = ctx.Process(target=run_worker, args=(spec, 10_000, child))
            proc.start()
            child.close()
            with contextlib.suppress(EOFError):  # EOF: the life died before it was ready
                if parent.poll(60) and parent.recv():
                    time.sleep(rng.uniform(0.0, max_life_s))
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.join()
            parent.close()
            report.kills += 1
            for problem in check_invariants(db, sim, approvals_file):
                report.violations.append(f"after kill {report.kills}: {problem}")
        final = WorkerSpec(db, sim, str(approvals_file), step_s)
        for _ in range(5):  # a life that dies by itself is restarted, as a process supervisor would (and reported)
            if _finish(final, final_steps):
                break
        _collect_crashes(workdir / "crashes.jsonl", report)
        report.violations += [f"at the end: {p}" for p in check_invariants(db, sim, approvals_file)]
        report.incidents = incident_states(db)
        for incident, state in report.incidents.items():
            if IncidentState(state) not in FINAL_STATES:
                report.violations.append(f"incident {incident} ended in non-final state {state}")
        report.actions_applied = len(httpx.get(f"{sim}/chaos/applied", timeout=10).json())
    report.approvals_given = len(approvals_file.read_text().splitlines()) if approvals_file.exists() else 0
    with AuditLog(db, create=False) as audit:
        report.audit_records = audit.verify().checked
    report.wall_s = time.perf_counter() - started
    return report


def _collect_crashes(path: Path, report: ChaosReport | CrashPointReport) -> None:
    """Lives that died by themselves (not by our SIGKILL) are violations."""
    lines = path.read_text().splitlines() if path.exists() else []
    for line in lines:
        report.violations.append(f"the loop's process died by itself: {json.loads(line)['error']}")


def _finish(spec: WorkerSpec, max_steps: int, until: datetime | None = None) -> bool:
    """One uninterrupted life: step until every incident is final (and the fleet's clock reached `until`).
    False if it died."""
    proc = mp.get_context("fork").Process(target=_finish_worker, args=(spec, max_steps, until))
    proc.start()
    proc.join(300)
    if proc.is_alive():
        proc.kill()
        proc.join()
        raise RuntimeError("final chaos worker did not finish within 300 s")
    return proc.exitcode == 0


def _finish_worker(spec: WorkerSpec, max_steps: int, until: datetime | None = None) -> None:
    try:
        _finish_life(spec, max_steps, until)
    except BaseException as error:
        _record_crash(spec, error)
        raise


def _finish_life(spec: WorkerSpec, max_steps: int, until: datetime | None = None) -> None:
    configure_logging("WARNING")
    with httpx.Client(timeout=10) as client:
        loop, clock, blobs = _open_loop(spec.db, spec.sim, client)
        loop.recover()
        for _ in range(max_steps):
            step(spec, loop, clock, blobs, client)
            rows = loop.store.list(limit=10_000)
            if rows and all(r.final for r in rows) and (until is None or clock.now() >= until):
                break
        loop.close()


# -- deterministic crash points ---------------------------------------------------------------


@dataclass
class CrashPointReport:
    """What one life that died at a `CrashPoint` left behind, and how the next life dealt with it."""

    point: CrashPoint
    died_there: bool = False
    """The first life was SIGKILLed by the crash point (not stopped by anything else)."""
    stranded: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)
    """Per incident whose thread was cut short: its pending tasks as (node, has a saved result)."""
    incidents: dict[str, str] = field(default_factory=dict)
    actions_applied: int = 0
    violations: list[str] = field(default_factory=list)


def stranded_threads(db: str, sim: str) -> dict[str, list[tuple[str, bool]]]:
    """Threads of open incidents that stopped with tasks pending and no interrupt waiting (as recover sees them)."""
    with httpx.Client(timeout=10) as client:
        loop, _clock, _blobs = _open_loop(db, sim, client)
    try:
        found: dict[str, list[tuple[str, bool]]] = {}
        for row in loop.store.list(open_only=True, limit=10_000):
            if not row.graph_started:
                continue
            snapshot = loop.graph.get_state({"configurable": {"thread_id": row.id}})
            tasks = [(t.name, t.result is not None) for t in snapshot.tasks if not (t.interrupts and t.result is None)]
            if tasks and len(tasks) == len(snapshot.tasks):
                found[row.id] = tasks
        return found
    finally:
        loop.close()


def run_crash_point(
    scenario_path: Path, workdir: Path, point: CrashPoint, *, step_s: float = 30.0, max_steps: int = 400
) -> CrashPointReport:
    """Play `scenario_path` until the loop dies at `point`; restart it and run until every incident is final."""
    db = str(workdir / "crash.sqlite")
    approvals_file = workdir / "approvals.jsonl"
    report = CrashPointReport(point)
    duration = timedelta(seconds=load_scenario(scenario_path).duration_s)
    with fleet_server(scenario_path) as sim:
        end = datetime.fromisoformat(httpx.get(f"{sim}/healthz", timeout=10).json()["now"]) + duration
        proc = mp.get_context("fork").Process(
            target=run_worker, args=(WorkerSpec(db, sim, str(approvals_file), step_s, point), max_steps)
        )
        proc.start()
        proc.join(300)
        if proc.is_alive():
            proc.kill()
            proc.join()
            raise RuntimeError(f"the life meant to die at {point} neither died nor finished within 300 s")
        report.died_there = proc.exitcode == -signal.SIGKILL
        if report.died_there:
            report.stranded = stranded_threads(db, sim)
        report.violations += [f"after the crash: {p}" for p in check_invariants(db, sim, approvals_file)]
        final = WorkerSpec(db, sim, str(approvals_file), step_s)
        if not _finish(final, max_steps, until=end):
            report.violations.append("the restarted loop died by itself")
        _collect_crashes(workdir / "crashes.jsonl", report)
        report.violations += [f"at the end: {p}" for p in check_invariants(db, sim, approvals_file)]
        report.incidents = incident_states(db)
        for incident, state in report.incidents.items():
            if IncidentState(state) not in FINAL_STATES:
                report.violations.append(f"incident {incident} ended in non-final state {state}")
        report.actions_applied = len(httpx.get(f"{sim}/chaos/applied", timeout=10).json())
    return report
