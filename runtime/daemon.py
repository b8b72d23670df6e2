"""`homeostat run`: the control loop as a long-running asyncio daemon.

APScheduler jobs poll the sources, tick the supervisor (start settled incidents, deliver
approvals, expire them, resume recovery windows), checkpoint detector state and watch the
constitution. The HTTP API runs in the same event loop. Loop work is synchronous (graph
steps, SQL), so it runs in one worker thread at a time behind a lock: ordering stays simple
and the event loop stays responsive. SIGTERM/SIGINT stop new work, let in-flight work finish
within the grace period, checkpoint the detectors and exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
import structlog
import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import text

from agents.diagnosis import DeterministicDiagnoser
from agents.ports import Diagnoser
from domain import ActionName, ActionOutcome, ChangeEvent, ChangeKind, OutcomeStatus, Topology
from domain.clock import Clock, SystemClock
from policies import Constitution, ConstitutionError
from runtime.api.app import create_app
from runtime.api.ports import DaemonStatus
from runtime.auth import TokenAuthority
from runtime.config import DiagnoserConfig, HomeostatConfig
from runtime.console import mount_console
from runtime.constitution_watch import ConstitutionWatcher
from runtime.db_cli import upgrade as upgrade_database
from runtime.detection import DetectionConfig, DetectionEngine, load_detection_config
from runtime.leader import LeaderLease, LeaseConfig
from runtime.loop import ControlLoop, LoopOptions
from runtime.metrics import Metrics
from runtime.notify import IncidentChange, Notifier
from runtime.ports import TelemetryBatch
from runtime.sources import build_sources
from runtime.store import IncidentRow, StateBlobStore
from runtime.topology_file import load_topology_file
from tools import ActionRequest, GuardConfig, SimulatorHttpAdapter, WebhookAdapter

log = structlog.get_logger("homeostat.daemon")

T = TypeVar("T")

DETECTOR_CHECKPOINT = "detection"


class RoutingAdapter:
    """Sends `escalate` to the on-call pager (the notifier) and every other action to the target."""

    def __init__(self, target: Any | None, page: Callable[[ActionRequest], None]) -> None:
        self._target = target
        self._page = page

    def call(self, request: ActionRequest) -> ActionOutcome:
        if request.action is ActionName.ESCALATE:
            self._page(request)
            return ActionOutcome(
                status=OutcomeStatus.SUCCEEDED, idempotency_key=request.idempotency_key, detail="paged"
            )
        if self._target is None:
            return ActionOutcome(
                status=OutcomeStatus.FAILED,
                idempotency_key=request.idempotency_key,
                detail="no remediation target is configured (tools.simulator_url or tools.webhook_targets)",
            )
        outcome: ActionOutcome = self._target.call(request)
        return outcome

    def lookup(self, idempotency_key: str) -> ActionOutcome | None:
        if self._target is None:
            return None
        found: ActionOutcome | None = self._target.lookup(idempotency_key)
        return found


class TargetRouter:
    """Remediations to the configured webhook target serving them, else to the simulator (if configured)."""

    def __init__(
        self,
        webhooks: WebhookAdapter,
        serves: Callable[[ActionRequest], bool],
        fallback: Any | None,
        *,
        has_status: bool = False,
    ) -> None:
        self._webhooks = webhooks
        self._serves = serves
        self._fallback = fallback
        self._has_status = has_status  # a webhook can say what it did (status_url): ask it first
        self._sent_to_webhooks: set[str] = set()

    def call(self, request: ActionRequest) -> ActionOutcome:
        if self._fallback is None or self._serves(request):
            self._sent_to_webhooks.add(request.idempotency_key)
            return self._webhooks.call(request)
        outcome: ActionOutcome = self._fallback.call(request)
        return outcome

    def lookup(self, idempotency_key: str) -> ActionOutcome | None:
        """Ask whoever the call went to; the simulator never answers for a webhook's call (its None
        would read as "did not act"). A key this process did not send (a restart) is asked of the
        webhooks first when they have a status_url, then of the simulator."""
        if self._fallback is None or idempotency_key in self._sent_to_webhooks:
            return self._webhooks.lookup(idempotency_key)  # raises when no status_url: the guard records UNKNOWN
        if self._has_status:
            found: ActionOutcome | None = self._webhooks.lookup(idempotency_key)
            if found is not None:
                return found
        found = self._fallback.lookup(idempotency_key)
        return found


def build_remediation_target(config: HomeostatConfig) -> Any | None:
    """What remediations call: the `tools.webhook_targets` (each serving the target name or glob it
    is keyed by), then `tools.simulator_url` for whatever no webhook serves; None if neither is set."""
    simulator = SimulatorHttpAdapter(config.tools.simulator_url) if config.tools.simulator_url else None
    if not config.tools.webhook_targets:
        return simulator
    targets = [t.target(name) for name, t in config.tools.webhook_targets.items()]
    return TargetRouter(
        WebhookAdapter(targets),
        lambda r: any(t.serves(r) for t in targets),
        simulator,
        has_status=any(t.status_url for t in targets),
    )


class AuditMetricsFeed:
    """Feeds the metrics the audit trail knows best: actions by constitution verdict, action
    outcomes and approval wait time (from the `decision` that asked for approval to the
    `approval` that settled it, or to `approval_timeout`).

    Pending waits are rebuilt from the log at start, so a wait that spans a restart is measured
    from the original request, on the audit records' own timestamps.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._pending: dict[str, datetime] = {}

    def seed(self, records: Iterable[Any]) -> None:
        """Remember approvals still pending in an existing log (counters are not replayed)."""
        self._pending.clear()
        for r in records:
            self._track(r.kind, r.payload, r.incident_id, r.ts)

    def observe(self, kind: str, payload: dict[str, Any], incident_id: str | None, ts: datetime) -> None:
        if kind == "decision":
            self._metrics.actions.labels(verdict=payload["decision"]["verdict"]).inc()
        elif kind == "action_result":
            self._metrics.action_outcomes.labels(status=payload["outcome"]["status"]).inc()
        result, started = self._track(kind, payload, incident_id, ts)
        if result is not None and started is not None:
            self._metrics.approval_wait.labels(result=result).observe(max(0.0, (ts - started).total_seconds()))

    def _track(
        self, kind: str, payload: dict[str, Any], incident_id: str | None, ts: datetime
    ) -> tuple[str | None, datetime | None]:
        if incident_id is None:
            return None, None
        if kind == "decision" and payload["decision"]["verdict"] == "approval":
            self._pending[incident_id] = ts
        elif kind == "approval_timeout":
            return "expired", self._pending.pop(incident_id, None)
        elif kind == "approval":
            if not payload["approval"]["approve"]:
                return "rejected", self._pending.pop(incident_id, None)
            if payload.get("approvals_so_far", 0) >= payload.get("required", 1):
                return "approved", self._pending.pop(incident_id, None)
        return None, None


class ObservedAudit:
    """The audit log, with every successful append also handed to `on_append`."""

    def __init__(self, inner: Any, on_append: Callable[[str, dict[str, Any], str | None, datetime], None]) -> None:
        self._inner = inner
        self._on_append = on_append

    def append(self, kind: str, payload: dict[str, Any], *, incident_id: str | None, ts: datetime) -> Any:
        record = self._inner.append(kind, payload, incident_id=incident_id, ts=ts)
        try:
            self._on_append(kind, payload, incident_id, ts)
        except Exception:  # metrics must never fail an audited step
            log.exception("metrics.feed_failed", kind=kind)
        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class SimulatorClockError(RuntimeError):
    """The simulator whose time the daemon should follow cannot be read."""


class SimulatorClock:
    """The virtual time of an HTTP simulator (`GET {url}/healthz` -> now, speed).

    Synced every `resync_s` on a thread of its own and extrapolated at the simulator's speed in
    between (a simulator moved only by `POST /advance` reports no speed: its time is read, not
    extrapolated); never goes backwards. With it the daemon's settle periods, recovery windows and
    approval deadlines run in the simulator's time, so a simulator at 10x plays an incident
    ten times faster and a jump (`POST /advance`) is seen within `resync_s`.
    """

    def __init__(self, url: str, *, resync_s: float = 0.25) -> None:
        self._url = url.rstrip("/") + "/healthz"
        self._lock = threading.Lock()
        self._anchor = datetime.min
        self._anchor_m = 0.0
        self._speed = 0.0
        self._last: datetime | None = None
        self.sync()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._keep_synced, args=(resync_s,), name="sim-clock", daemon=True)
        self._thread.start()

    def sync(self) -> None:
        try:
            response = httpx.get(self._url, timeout=5.0)
            response.raise_for_status()
            body = response.json()
            virtual = datetime.fromisoformat(body["now"])
            speed = float(body.get("speed") or 0.0)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            raise SimulatorClockError(f"cannot read the simulator's time at {self._url}: {exc}") from exc
        if virtual.tzinfo is None:
            raise SimulatorClockError(f"{self._url}: now {body['now']!r} has no timezone")
        with self._lock:
            self._anchor, self._anchor_m, self._speed = virtual, time.monotonic(), speed

    def _keep_synced(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                self.sync()
            except SimulatorClockError as exc:  # keep extrapolating; the source shows as stale
                log.warning("sim_clock.unavailable", error=str(exc))

    def now(self) -> datetime:
        with self._lock:
            t = self._anchor + timedelta(seconds=(time.monotonic() - self._anchor_m) * self._speed)
            if self._last is not None and t < self._last:
                t = self._last
            self._last = t
            return t

    def close(self) -> None:
        self._stop.set()


def build_diagnoser(config: DiagnoserConfig) -> Diagnoser:
    """The loop's diagnoser from the config's ``diagnoser:`` section.

    ``kind: llm`` builds an OpenAI-compatible chat model (the key read from the environment
    variable named by ``api_key_env``) behind the LLM diagnoser, which falls back to the
    deterministic ranking on any model failure or exhausted budget.
    """
    if config.kind == "deterministic":
        return DeterministicDiagnoser()
    from agents.diagnosis import LLMDiagnoser, build_openai_compatible_model

    assert config.base_url is not None and config.model is not None  # the config validator saw to it
    model = build_openai_compatible_model(
        config.base_url,
        config.model,
        config.api_key_env,
        timeout_s=config.timeout_s,
        max_tokens=config.max_completion_tokens,
    )
    return LLMDiagnoser(
        model,
        fallback=DeterministicDiagnoser(),
        timeout_s=config.timeout_s,
        max_tokens_per_incident=config.max_tokens_per_incident,
        max_tool_calls=config.max_tool_calls,
    )


def simulator_url_of(config: HomeostatConfig) -> str | None:
    """The simulator a daemon polls (its first simulator source), else the one it remediates."""
    for source in config.sources:
        if source.type == "simulator":
            return str(source.url)
    return str(config.tools.simulator_url) if config.tools.simulator_url else None


def database_path_or_url(url: str) -> str:
    """The loop takes a bare SQLite path or a PostgreSQL URL."""
    return url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url


SCHEMA_LOCK_KEY = 0x486F6D65  # "Home": the advisory lock serialising replicas' schema set-up


@contextlib.contextmanager
def schema_lock(url: str) -> Iterator[None]:
    """On PostgreSQL, hold a session advisory lock while the caller creates or migrates tables."""
    if not url.startswith(("postgresql", "postgres")):
        yield
        return
    import psycopg

    plain = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", url)
    with psycopg.connect(plain, autocommit=True) as conn:
        # Poll with try-lock rather than block: a session blocked in pg_advisory_lock is an open
        # transaction, and LangGraph's CREATE INDEX CONCURRENTLY in the holder waits for every
        # open transaction to end, so a blocking wait here deadlocks (undetected) with it.
        while not conn.execute("SELECT pg_try_advisory_lock(%s)", (SCHEMA_LOCK_KEY,)).fetchone()[0]:  # type: ignore[index]
            time.sleep(0.2)
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK_KEY,))


class Daemon:
    def __init__(self, config: HomeostatConfig, *, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.sources = build_sources(config)
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self.notifier = Notifier.from_config(config.notifications, metrics=self.metrics)
        target = build_remediation_target(config)
        allow = {action: list(config.tools.allowed_targets) for action in ActionName}
        allow[ActionName.ESCALATE] = ["*"]  # paging a human changes nothing on any target
        detection = load_detection_config(config.detection_overrides)
        self._detection_config: DetectionConfig = detection
        # Replicas starting together must not race on DDL (alembic, LangGraph's and the audit
        # log's CREATE ... IF NOT EXISTS collide in PostgreSQL's catalog): one at a time.
        with schema_lock(config.database_url):
            revision = upgrade_database(config.database_url)  # schema migrations first, on every start
            log.info("database.migrated", revision=revision)
            replicated = config.database_url.startswith(("postgresql", "postgres"))
            options = LoopOptions(
                db=database_path_or_url(config.database_url),
                constitution_path=config.constitution,
                detection=detection,
                guard=GuardConfig(allow=allow, dry_run=config.tools.dry_run),
                fence=self._fence if replicated else None,
                diagnoser=build_diagnoser(config.diagnoser),
            )
            self.loop = ControlLoop(
                options, clock=self.clock, adapter=RoutingAdapter(target, self._page), on_change=self._on_change
            )
            # Actions by verdict, outcomes and approval waits are read off the audit trail.
            self.audit_feed = AuditMetricsFeed(self.metrics)
            self.audit_feed.seed(self.loop.audit.records())
            self.loop.audit = ObservedAudit(self.loop.audit, self.audit_feed.observe)  # type: ignore[assignment]
            self.loop.refresh()  # the journal, guard and graph now write through the observer
            self.blobs = StateBlobStore(self.loop.store.engine)
            # One process on SQLite leads by construction; replicas on PostgreSQL contend for a lease.
            self.lease: LeaderLease | None = None
            if replicated:
                ha = config.ha
                self.lease = LeaderLease(
                    self.loop.store.engine,
                    LeaseConfig(ttl_s=ha.lease_ttl_s, renew_s=ha.lease_renew_s, margin_s=ha.lease_margin_s),
                )
        self._leading = self.lease is None
        if self.lease is None:
            self._restore_detection()
        self.watcher = ConstitutionWatcher(
            config.constitution, on_change=self._constitution_changed, on_error=self._constitution_rejected
        )
        self.status = DaemonStatus(self.clock, self.sources.guarded, self._db_check)
        self.status.constitution_loaded(
            digest=self.loop.constitution.digest, path=str(config.constitution), at=self.clock.now()
        )
        auth = TokenAuthority.from_file(config.auth.tokens_file) if config.auth.tokens_file else TokenAuthority([])
        self.app = create_app(
            self.loop.supervisor,
            auth=auth,
            push=self.sources.push,
            alertmanager=self.sources.alertmanager,
            status=self.status,
            metrics=self.metrics,
            audit=self,
            access_audit=self,
            max_body_bytes=config.api.max_body_bytes,
            call=self._serialized,
        )
        mount_console(
            self.app,
            service=self.loop.supervisor,
            auth=auth,
            series=self.loop.telemetry,
            audit=self.loop.audit,
            status=self.status,
            clock=self.clock,
            constitution=lambda: self.loop.constitution,
            access_audit=self,
        )
        self._work = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._lease_stop = threading.Event()
        self._promoting = threading.Event()
        self._lease_thread: threading.Thread | None = None
        self._topology_loaded = False
        if config.topology is not None:
            # The operator's picture of the fleet; simulator sources and change events refine it.
            self.loop.telemetry.set_topology(load_topology_file(config.topology))
            log.info("topology.file", path=str(config.topology), services=len(self.loop.telemetry.topology().services))

    # -- leadership ------------------------------------------------------------------------

    def _restore_detection(self) -> None:
        blob = self.blobs.get(DETECTOR_CHECKPOINT)
        if blob is not None:
            self.loop.detection = DetectionEngine.restore(blob, self._detection_config)
            log.info("detection.restored", series=self.loop.detection.series_count)

    def _fence(self) -> None:
        """Before every action: this replica must hold the lease (raises LeadershipLost)."""
        if self.lease is not None:
            self.lease.check()

    def is_leader(self) -> bool:
        """True while this replica may poll, detect and act."""
        if self.lease is None:
            return self._leading
        return self._leading and self.lease.holds()

    def _keep_lease(self) -> None:
        """Lease thread: renew (leader) or try to take (follower) every `renew_s`, on its own thread.

        Not an APScheduler job: under load the event loop and the worker pool lag by seconds, and
        a renewal that waits behind loop work would let a live leader's lease lapse (or delay a
        follower's takeover past TTL + renewal). Promotion itself runs as loop work.
        """
        lease = self.lease
        assert lease is not None
        next_at = time.monotonic()
        while not self._lease_stop.wait(max(0.0, next_at - time.monotonic())):
            next_at = time.monotonic() + lease.config.renew_s
            held = lease.acquire_or_renew()
            if held and not self._leading and not self._promoting.is_set():
                self._promoting.set()
                self._threadsafe(lambda: asyncio.ensure_future(self._promote()))
            elif not held and self._leading:
                self._leading = False
                log.error("leader.demoted", holder=lease.holder)

    async def _promote(self) -> None:
        try:
            await self._in_worker("take_over", self._take_over)
        finally:
            self._promoting.clear()

    def _take_over(self) -> None:
        """Become leader: restore detectors, re-read what the last leader wrote, settle and resume."""
        assert self.lease is not None
        self.lease.check()
        self._restore_detection()
        self.watcher.check()
        self.audit_feed.seed(self.loop.audit.records())  # waits the last leader opened
        self.loop.refresh()
        self.loop.recover()  # intents without a result are settled by key, never repeated
        self._leading = True
        lease = self.lease.current()
        log.info(
            "leader.promoted",
            holder=self.lease.holder,
            epoch=self.lease.epoch,
            acquired_at=lease.acquired_at if lease else None,
        )

    # -- loop work (one at a time, in a worker thread) -------------------------------------

    async def _serialized(self, fn: Callable[[], T]) -> T:
        """API calls take turns with loop work: one thread touches the supervisor and store at a time."""
        async with self._work:
            return await asyncio.to_thread(fn)

    async def _in_worker(self, name: str, fn: Callable[[], None]) -> None:
        if self._stopping.is_set():
            return
        async with self._work:
            started = asyncio.get_running_loop().time()
            try:
                await asyncio.to_thread(fn)
            except Exception:
                log.exception("job.failed", job=name)  # a bad batch or step never stops the daemon
            finally:
                self.metrics.loop_latency.observe(asyncio.get_running_loop().time() - started)

    async def poll(self, index: int) -> None:
        if not self.is_leader():
            return
        source = self.sources.guarded[index]
        batch = await source.poll(self.clock.now())
        if batch.samples or batch.changes or batch.anomalies:
            await self._in_worker(f"ingest:{source.name}", lambda: self._ingest(source.name, batch))
        self.metrics.observe_sources([source.health(self.clock.now())])

    def _load_topology(self) -> None:
        """Services and their providers from each simulator source's GET /topology (once loaded, kept),
        over what the daemon already knows (the `topology:` file, moved by change events): a service
        the simulator serves takes the simulator's wiring, every other service keeps its own.

        Without a topology the diagnoser cannot see that services share a provider, so a provider
        outage across them reads as unrelated errors and is only ever escalated.
        """
        if self._topology_loaded:
            return
        urls = [str(s.url).rstrip("/") for s in self.config.sources if s.type == "simulator"]
        merged: dict[str, Any] = {}
        for url in urls:
            try:
                response = httpx.get(f"{url}/topology", timeout=5.0)
                response.raise_for_status()
                merged |= Topology.model_validate(response.json()).services
            except (httpx.HTTPError, ValueError) as exc:
                log.warning("topology.unavailable", url=f"{url}/topology", error=f"{type(exc).__name__}: {exc}")
                return
        if merged:
            known = self.loop.telemetry.topology().services
            self.loop.telemetry.set_topology(Topology(services={**known, **merged}))
            log.info("topology.loaded", services=sorted(merged))
        self._topology_loaded = True

    def _ingest(self, source: str, batch: TelemetryBatch) -> None:
        if batch.changes:
            # Wiring changed (a deploy, or Homeostat's own failover or rollback): the diagnoser and
            # the remedies must see services where they are now, not where they were at start.
            self._apply_changes(batch.changes)
            self._topology_loaded = False
        self._load_topology()
        self.metrics.record_batch(source, batch)
        self.metrics.record_anomalies(self.loop.ingest(batch))

    def _apply_changes(self, changes: Sequence[ChangeEvent]) -> None:
        """Move each changed service's known wiring to the change's new value (the previous one is kept
        as `previous_*`; a failover onto the backup makes the old provider the backup). Sources that
        serve a topology (the simulator's GET /topology) are re-read afterwards and win."""
        services = dict(self.loop.telemetry.topology().services)
        for change in sorted(changes, key=lambda c: c.ts):
            info = services.get(change.service)
            if info is None:
                continue
            update: dict[str, Any]
            if change.kind is ChangeKind.PROVIDER:
                update = {"provider": change.to_value}
                if info.backup_provider == change.to_value:
                    update["backup_provider"] = change.from_value
            elif change.kind is ChangeKind.MODEL_VERSION:
                update = {"model_version": change.to_value, "previous_model_version": change.from_value}
            elif change.kind is ChangeKind.PROMPT_VERSION:
                update = {"prompt_version": change.to_value, "previous_prompt_version": change.from_value}
            elif change.kind is ChangeKind.ROUTING:
                update = {"routing": change.to_value, "previous_routing": change.from_value}
            else:
                continue
            services[change.service] = info.model_copy(update=update)
        self.loop.telemetry.set_topology(Topology(services=services))

    async def tick(self) -> None:
        if self.is_leader():
            await self._in_worker("tick", self._leader_only(self._tick))

    def _tick(self) -> None:
        """The loop's clock-driven work, with series staleness judged as of the sources' last answers.

        A series is stale when its source answered and the series was not in it. Judged against the
        clock alone, every series looks stale after a restart (or any pause of this process) until the
        first poll brings the missed samples in: a page per series for our own downtime.
        """
        reference = self._staleness_reference()
        if reference is not None:
            stale = self.loop.detection.check_staleness(reference)
            if stale:
                self.loop.supervisor.on_anomalies(stale)
        self.loop.supervisor.tick()

    def _staleness_reference(self) -> datetime | None:
        """The instant every working source has answered by (None until each has answered once since start).

        A failing source does not hold it back: its series go stale on the clock, as its silence is real."""
        now = self.clock.now()
        answered: list[datetime] = []
        for source in self.sources.guarded:
            health = source.health(now)
            if health.consecutive_failures:
                continue
            if health.last_success is None:
                return None
            answered.append(health.last_success)
        return min([now, *answered])

    async def checkpoint(self) -> None:
        if self.is_leader():
            await self._in_worker("checkpoint", self._leader_only(self._checkpoint))

    def _leader_only(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Re-check leadership inside the worker: the lease may have lapsed while work queued."""

        def guarded() -> None:
            if self.is_leader():
                fn()

        return guarded

    def _checkpoint(self) -> None:
        self.blobs.put(DETECTOR_CHECKPOINT, self.loop.detection.snapshot(), self.clock.now())

    async def watch_constitution(self) -> None:
        if not self.is_leader():  # followers re-read the file when they take over
            return
        await self._in_worker("constitution", self._check_constitution)

    def _check_constitution(self) -> None:
        self.watcher.check()

    # -- effects outside the loop ----------------------------------------------------------

    def _page(self, request: ActionRequest) -> None:
        change = IncidentChange(
            incident_id=request.incident_id,
            state="escalated",
            service=request.target,
            summary="Homeostat escalates: a human must look at this incident.",
        )
        self._threadsafe(lambda: self.notifier.notify(change))

    def _on_change(self, row: IncidentRow) -> None:
        facts = {k: v for k, v in (("cause", row.cause), ("action", row.action), ("target", row.target)) if v}
        change = IncidentChange(
            incident_id=row.id, state=row.state, service=", ".join(row.services), summary=row.summary, facts=facts
        )
        self._threadsafe(lambda: self.notifier.notify(change))
        counts: dict[str, int] = {}
        for incident in self.loop.store.list(limit=10_000):
            counts[incident.state] = counts.get(incident.state, 0) + 1
        self.metrics.set_incident_counts(counts)

    def _threadsafe(self, fn: Callable[[], object]) -> None:
        if self._event_loop is not None and self._event_loop.is_running():
            self._event_loop.call_soon_threadsafe(fn)

    def _constitution_changed(self, old: Constitution, new: Constitution) -> None:
        self.loop.replace_constitution(new)
        self.status.constitution_loaded(digest=new.digest, path=str(self.config.constitution), at=self.clock.now())
        log.info("constitution.reloaded", old=old.digest, new=new.digest)

    def _constitution_rejected(self, error: ConstitutionError) -> None:
        self.loop.journal.append(
            "constitution_rejected",
            {
                "source": str(self.config.constitution),
                "errors": str(error).splitlines(),
                "kept_digest": self.loop.constitution.digest,
            },
            incident_id=None,
            ts=self.clock.now(),
        )
        self.status.constitution_reload_failed(error=str(error), at=self.clock.now())
        log.error("constitution.rejected", errors=str(error).splitlines(), kept=self.loop.constitution.digest)

    def _db_check(self) -> None:
        with self.loop.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # -- API protocols (audit queries, access audit) ---------------------------------------

    def query_audit(
        self, *, incident: str | None, kind: str | None, after_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for record in self.loop.audit.records(incident_id=incident, kind=kind, after_seq=after_seq or 0):
            out.append(
                {
                    "seq": record.seq,
                    "ts": record.ts.isoformat(),
                    "incident_id": record.incident_id,
                    "kind": record.kind,
                    "payload": record.payload,
                    "prev_hash": record.prev_hash,
                    "hash": record.hash,
                }
            )
            if len(out) >= limit:
                break
        return out

    def access_denied(self, *, who: str | None, method: str, path: str, status: int, reason: str) -> None:
        payload = {"who": who, "method": method, "path": path, "status": status, "reason": reason}
        self.loop.journal.append("access_denied", payload, incident_id=None, ts=self.clock.now())

    # -- lifecycle -------------------------------------------------------------------------

    async def run(self, *, install_signal_handlers: bool = True) -> None:
        self._event_loop = asyncio.get_running_loop()
        if install_signal_handlers:
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._event_loop.add_signal_handler(signum, self.request_stop)
        self.notifier.start()
        intervals = self.config.intervals
        scheduler = AsyncIOScheduler(event_loop=self._event_loop)
        if self.lease is None:
            await self._in_worker("recover", self.loop.recover)
        else:
            self._lease_thread = threading.Thread(target=self._keep_lease, name="lease", daemon=True)
            self._lease_thread.start()
        for i, source in enumerate(self.sources.guarded):
            every = self.sources.intervals_s.get(source.name, intervals.poll_s)
            scheduler.add_job(
                self.poll, "interval", args=[i], seconds=every, id=f"poll:{source.name}", max_instances=1, coalesce=True
            )
        tick_every = min(intervals.approval_expiry_s, intervals.verification_s)
        scheduler.add_job(self.tick, "interval", seconds=tick_every, id="tick", max_instances=1, coalesce=True)
        scheduler.add_job(
            self.checkpoint, "interval", seconds=intervals.checkpoint_s, id="checkpoint", max_instances=1, coalesce=True
        )
        scheduler.add_job(
            self.watch_constitution, "interval", seconds=5, id="constitution", max_instances=1, coalesce=True
        )
        scheduler.start()
        server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=self.config.api.host,
                port=self.config.api.port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
        server_task = asyncio.create_task(server.serve(), name="api")
        log.info(
            "daemon.started",
            api=f"{self.config.api.host}:{self.config.api.port}",
            sources=[s.name for s in self.sources.guarded],
        )
        stop_task = asyncio.create_task(self._stopping.wait(), name="stop")
        await asyncio.wait({server_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        self._stopping.set()
        log.info("daemon.stopping", grace_s=self.config.grace_period_s)
        scheduler.shutdown(wait=False)
        try:  # in-flight loop work gets the grace period; then detectors are checkpointed
            await asyncio.wait_for(self._work.acquire(), timeout=self.config.grace_period_s)
            if self.is_leader():
                await asyncio.to_thread(self._checkpoint)
            self._work.release()
        except TimeoutError:
            log.warning("daemon.grace_period_exceeded", grace_s=self.config.grace_period_s)
        server.should_exit = True
        await asyncio.wait({server_task}, timeout=self.config.grace_period_s)
        await self.notifier.aclose()
        if self.lease is not None:
            self._lease_stop.set()
            if self._lease_thread is not None:
                await asyncio.to_thread(self._lease_thread.join, 10)
            self._leading = False
            await asyncio.to_thread(self.lease.release)  # a follower takes over now, not after the TTL
        self.loop.close()
        log.info("daemon.stopped")

    def request_stop(self) -> None:
        """Ask the daemon to stop; safe to call more than once and from a signal handler."""
        self._stopping.set()


def run_daemon(config: HomeostatConfig, *, clock: Clock | None = None) -> None:
    asyncio.run(Daemon(config, clock=clock).run())
